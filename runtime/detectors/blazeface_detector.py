"""The default face detector: BlazeFace short range (:mod:`.blazeface`) over a frame of any size, in bounded memory.

The network sees 128x128 pixels and finds faces from about ``MIN_FACE_IN_INPUT`` pixels to the whole input.
A frame is covered by a pyramid of square windows (:func:`plan_windows`): the whole frame letterboxed to a
square (zero padding, as MediaPipe does), then tiles shrinking by a constant factor of at most 2 per level,
down to the tile side at which a face of ``min_face`` frame pixels is still ``MIN_FACE_IN_INPUT`` input
pixels. Tiles of a level overlap by the largest face that the level above cannot see, so every face lies
whole inside some window of the level responsible for its size. Detections are mapped back to the frame,
those cut by a tile edge are dropped, and the rest are merged by MediaPipe's weighted NMS.

Memory does not grow with the frame: windows go through the network in batches of at most
``batch_windows`` (one :class:`~.session.DetectorSession` call each), each window is cut and converted to RGB
on its own (no full-frame copy), and the pending detections are merged whenever they pass ``max_pending``.

Work per call: :meth:`BlazeFaceDetector.detect` runs every window (single images). :meth:`BlazeFaceDetector.scan`
(the tracker's, once per video frame) is bounded: while faces are tracked it runs one step of a sweep (the
coarse levels and, in turn, a share of the fine tiles, at most ``max_windows`` windows, spread over
``spread`` frames); while searching (no face tracked, or one just lost) it scans the downscaled frame first
(the coarsest levels, keeping weak candidates), looks again at the best candidates at their own scale, and
spends the rest of its ``search_windows`` on the fine tiles in turn. No frame pays for a whole pyramid. :meth:`BlazeFaceDetector.check_regions` looks again at known faces (the tracker's
region check). Boxes are mapped to the tight 68-landmark box by :data:`BLAZE_TO_TIGHT`. The measurements
behind the constants are in docs/detection-tracking.md.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..boxes import BoxMapping, iou_matrix
from .base import DetectorBase, DetectorError, Detections
from .blazeface import ANCHORS, INPUT_SIZE, RawDetections, concat, decode, weighted_nms
from .session import DetectorSession, OrtSession

#: the smallest face (tight-box width) the network finds reliably, in input pixels (docs/detection-tracking.md)
MIN_FACE_IN_INPUT = 22.0
MODEL_FILE = "detector/blazeface_short_range.onnx"

#: BlazeFace box -> tight 68-landmark box, measured on 1,500 aflw19k train faces (docs/detection-tracking.md)
BLAZE_TO_TIGHT = BoxMapping(dx=-0.007, dy=0.041, sw=0.935, sh=0.947)


@dataclass(frozen=True)
class Window:
    """A square window of the frame (may extend past it: zero padding), side in frame pixels."""

    x0: float
    y0: float
    side: float
    level: int


def _positions(length: int, side: float, overlap: float) -> list[float]:
    if side >= length:
        return [0.0]
    n = math.ceil((length - side) / max(side - overlap, 1.0)) + 1
    return [float(v) for v in np.linspace(0.0, length - side, n)]


def plan_windows(width: int, height: int, min_face: float = 40.0,
                 min_in: float = MIN_FACE_IN_INPUT) -> list[Window]:
    """The pyramid for a frame, coarsest first: level 0 the whole frame (letterboxed), then square tiles whose
    side shrinks by a constant factor of at most 2 per level, the last level sized so that ``min_face``
    frame pixels become ``min_in`` input pixels. Tiles of a level overlap by 1.25x the largest face the level
    above does not find reliably (``min_in`` in its input), so each face lies whole in a tile of its level."""
    full = float(max(width, height))
    finest = min(full, min_face * INPUT_SIZE / min_in)
    n = math.ceil(math.log2(full / finest) - 1e-9) if finest < full else 0
    ratio = (full / finest) ** (1.0 / n) if n else 1.0
    wins = [Window(0.0, 0.0, full, 0)]
    for lv in range(1, n + 1):
        side = full / ratio ** lv
        overlap = min(side * 0.9, 1.25 * min_in * side * ratio / INPUT_SIZE)
        for y in _positions(height, side, overlap):
            for x in _positions(width, side, overlap):
                wins.append(Window(x, y, side, lv))
    return wins


def window_input(rgb: np.ndarray, win: Window) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The window as a (128, 128, 3) uint8 image (zero padding outside the frame) and its mapping back,
    ``frame_x = ox + u / kx``, ``frame_y = oy + v / ky``: (image, (ox, oy, kx, ky))."""
    h, w = rgb.shape[:2]
    k = INPUT_SIZE / win.side
    out = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    cx0, cy0 = max(0, int(round(win.x0))), max(0, int(round(win.y0)))
    cx1, cy1 = min(w, int(round(win.x0 + win.side))), min(h, int(round(win.y0 + win.side)))
    if cx1 <= cx0 or cy1 <= cy0:
        return out, (win.x0, win.y0, k, k)
    dx = min(INPUT_SIZE - 1, max(0, int(round((cx0 - win.x0) * k))))
    dy = min(INPUT_SIZE - 1, max(0, int(round((cy0 - win.y0) * k))))
    dw = max(1, min(INPUT_SIZE - dx, int(round((cx1 - cx0) * k))))
    dh = max(1, min(INPUT_SIZE - dy, int(round((cy1 - cy0) * k))))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    out[dy:dy + dh, dx:dx + dw] = cv2.resize(rgb[cy0:cy1, cx0:cx1], (dw, dh), interpolation=interp)
    kx, ky = dw / (cx1 - cx0), dh / (cy1 - cy0)
    return out, (cx0 - dx / kx, cy0 - dy / ky, kx, ky)


def _to_frame(d: RawDetections, m: tuple[float, float, float, float]) -> RawDetections:
    ox, oy, kx, ky = m
    k, off = np.array([kx, ky]), np.array([ox, oy])
    return RawDetections(d.boxes / np.tile(k, 2) + np.tile(off, 2), d.keypoints / k + off, d.scores)


def _inside_tile(d: RawDetections, win: Window, width: int, height: int, margin: float = 0.01) -> np.ndarray:
    """Detections not cut by an inner tile edge (an edge that is also the frame's edge does not count)."""
    m = margin * win.side
    b = d.boxes
    ok = np.ones(len(d), bool)
    if win.x0 > 0:
        ok &= b[:, 0] >= win.x0 + m
    if win.y0 > 0:
        ok &= b[:, 1] >= win.y0 + m
    if win.x0 + win.side < width:
        ok &= b[:, 2] <= win.x0 + win.side - m
    if win.y0 + win.side < height:
        ok &= b[:, 3] <= win.y0 + win.side - m
    return ok


def _subset(d: RawDetections, keep: np.ndarray) -> RawDetections:
    return RawDetections(d.boxes[keep], d.keypoints[keep], d.scores[keep])


class BlazeFaceDetector(DetectorBase):
    """BlazeFace short range, any frame size, several faces; returns tight boxes.

    ``session``: where the network runs, any :class:`~.session.DetectorSession` returning ``regressors`` and
    ``classificators`` (default: ONNX Runtime on the CPU with ``model_path``, default the shipped file).
    ``min_face``: smallest face (detector box width, about the tight box width) to look for, frame pixels.
    ``score_threshold``: 0.55 for new faces (MediaPipe uses 0.5: over many windows false positives add up);
    ``check_threshold``: 0.45 in the region check (keeping a known face needs less evidence than finding one).
    ``batch_windows``: the most windows per network call. ``max_windows``: the windows of one sweep (coarse
    levels and a share of the fine tiles); ``search_windows``: the windows of a searching scan step, of which
    up to ``max_candidates`` look again at the downscaled frame's candidates (score >= ``candidate_threshold``)
    in a window ``candidate_context`` times their size.
    ``max_pending``: raw detections held before they are merged (bounds memory on pathological frames).
    ``mapping=None`` leaves the detector's own boxes (for measuring the mapping).
    """

    sweeps = True
    region_check = True

    def __init__(self, model_path: str | os.PathLike | None = None, *, session: DetectorSession | None = None,
                 score_threshold: float = 0.55, nms_iou: float = 0.3, min_face: float = 40.0,
                 max_windows: int = 16, search_windows: int = 8, max_candidates: int = 3,
                 candidate_threshold: float = 0.25, candidate_context: float = 1.6, batch_windows: int = 16,
                 max_pending: int = 4096, threads: int | None = 1,
                 mapping: BoxMapping | None = BLAZE_TO_TIGHT, check_threshold: float = 0.45) -> None:
        if not 0.0 < score_threshold < 1.0 or min_face < 1:
            raise ValueError("score_threshold must be in (0, 1) and min_face >= 1")
        if min(max_windows, search_windows, batch_windows, max_pending) < 1 or max_candidates < 0:
            raise ValueError("max_windows, search_windows, batch_windows and max_pending must be >= 1, "
                             "max_candidates >= 0")
        if session is None:
            if model_path is None:
                from ..default_model import asset_path

                model_path = asset_path(MODEL_FILE)
            if not Path(model_path).is_file():
                raise DetectorError(f"{model_path}: BlazeFace ONNX not found; reinstall fa3d or use --detector haar")
            session = OrtSession(model_path, what="BlazeFace", outputs=("regressors", "classificators"),
                                 input_shape=(3, INPUT_SIZE, INPUT_SIZE), threads=threads)
        self.session = session
        self.batch_windows = min(batch_windows, session.max_batch or batch_windows)
        self.score_threshold, self.nms_iou, self.min_face = score_threshold, nms_iou, min_face
        self.check_threshold = check_threshold
        self.max_windows, self.search_windows, self.max_pending = max_windows, search_windows, max_pending
        self.max_candidates, self.candidate_threshold = max_candidates, candidate_threshold
        self.candidate_context = candidate_context
        self.mapping = mapping
        self._plans: dict[tuple[int, int], list[Window]] = {}
        self._cursor = 0  # the next fine tile of the rotation
        self._queue: list[Window] = []  # what is left of the current sweep
        self._search_cursor = 0  # the next fine tile of a search
        self._searching = False
        self.last_windows = 0  # network inputs of the latest call

    def plan(self, width: int, height: int) -> list[Window]:
        key = (width, height)
        if key not in self._plans:
            self._plans = {key: plan_windows(width, height, self.min_face)}
            self._cursor, self._search_cursor, self._queue = 0, 0, []
        return self._plans[key]

    def _outputs(self, image_bgr: np.ndarray, windows: list[Window], threshold: float):
        """(window, its detections in frame pixels) for each window; the network runs on batches of at most
        ``batch_windows`` windows, one session call each."""
        for i in range(0, len(windows), self.batch_windows):
            chunk = windows[i:i + self.batch_windows]
            ins = [window_input(image_bgr, win) for win in chunk]
            x = np.stack([a for a, _ in ins])[..., ::-1]  # BGR -> RGB, window by window (no frame copy)
            x = x.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
            reg, cls = self.session.run(np.ascontiguousarray(x))
            reg, cls = np.asarray(reg), np.asarray(cls)
            if reg.shape != (len(chunk), len(ANCHORS), 16) or cls.size != len(chunk) * len(ANCHORS):
                raise DetectorError(f"the BlazeFace network returned {reg.shape} and {cls.shape} for {len(chunk)} "
                                    f"windows, expected ({len(chunk)}, {len(ANCHORS)}, 16) and ({len(chunk)}, "
                                    f"{len(ANCHORS)}, 1); is the file the BlazeFace short-range model?")
            self.last_windows += len(chunk)
            for j, (win, (_, m)) in enumerate(zip(chunk, ins)):
                d = decode(reg[j], cls[j], threshold)
                yield win, (_to_frame(d, m) if len(d) else d)

    def _run(self, image_bgr: np.ndarray, windows: list[Window], threshold: float | None = None) -> RawDetections:
        """Detections of pyramid windows, merged (weighted NMS); those cut by an inner tile edge are dropped."""
        h, w = image_bgr.shape[:2]
        pending: list[RawDetections] = []
        count = 0
        threshold = self.score_threshold if threshold is None else threshold
        for win, d in self._outputs(image_bgr, windows, threshold):
            if len(d) and win.level > 0:
                d = _subset(d, _inside_tile(d, win, w, h))
            if len(d):
                pending.append(d)
                count += len(d)
            if count > self.max_pending:  # merge early: what is held stays bounded whatever the frame
                pending = [weighted_nms(concat(pending), self.nms_iou)]
                count = len(pending[0])
        return weighted_nms(concat(pending), self.nms_iou)

    def detect_raw(self, image_bgr: np.ndarray, windows: list[Window] | None = None) -> RawDetections:
        """Detections in frame pixels with BlazeFace's own boxes and keypoints, best first (all windows)."""
        h, w = image_bgr.shape[:2]
        windows = self.plan(w, h) if windows is None else windows
        self.last_windows = 0
        return self._run(image_bgr, windows)

    def _result(self, d: RawDetections) -> Detections:
        boxes = d.boxes if self.mapping is None else self.mapping.apply(d.boxes)
        return Detections(boxes.reshape(-1, 4), d.scores, keypoints=d.keypoints)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Every face from ``min_face`` pixels up, over the whole pyramid (tight boxes, best first)."""
        return self._result(self.detect_raw(image_bgr))

    def scan(self, image_bgr: np.ndarray, *, search: bool = False, spread: int = 1) -> Detections:
        """One bounded step for the tracker (see the module doc). Tracking (``search=False``): the next
        ``ceil(sweep / spread)`` windows of the sweep. Searching: :meth:`_search`."""
        h, w = image_bgr.shape[:2]
        self.plan(w, h)
        self.last_windows = 0
        if search:
            if not self._searching:  # a new search: the fine tiles from the coarsest on
                self._search_cursor = 0
            self._searching, self._queue = True, []  # the sweep starts again once a face is tracked
            return self._result(self._search(image_bgr))
        self._searching = False
        sweep = self.sweep_length(w, h)
        step = min(sweep, math.ceil(sweep / max(1, spread)))
        pick: list[Window] = []
        while len(pick) < step:
            if not self._queue:
                self._queue = self._next_sweep(w, h)
            take = step - len(pick)
            pick, self._queue = pick + self._queue[:take], self._queue[take:]
        return self._result(self._run(image_bgr, pick))

    def _search(self, image_bgr: np.ndarray) -> RawDetections:
        """At most ``search_windows`` windows: the downscaled frame first (the coarsest levels, keeping
        candidates from the low ``candidate_threshold``), then a window around each of its best
        ``max_candidates`` candidates (a face small or weak there is seen again at its own scale), and the
        rest of the budget on the fine tiles in turn, coarsest first. A face counts when one look at it
        reaches ``score_threshold``."""
        h, w = image_bgr.shape[:2]
        wins = self.plan(w, h)
        if len(wins) <= self.search_windows:
            return self._run(image_bgr, wins)
        coarse = self._coarse(w, h)
        rest = wins[len(coarse):]
        spare = max(0, self.search_windows - len(coarse) - self.max_candidates)
        # one network call for the coarse levels (weak detections kept as candidates) and a first share of the
        # fine tiles; one for a window around each of the best candidates (a face small in the coarse windows
        # is found there roughly or weakly: it is seen again at its own scale) and the rest of the budget
        cands, found = self._looks(image_bgr, coarse, [], self._fine_tiles(rest, spare))
        budget = self.search_windows - len(coarse) - spare
        around = [self._around(box, self.candidate_context) for box in cands.boxes[:min(budget, self.max_candidates)]]
        _, more = self._looks(image_bgr, [], around, self._fine_tiles(rest, budget - len(around)))
        # every look at a face joins its cluster (the box: their score-weighted mean); a face counts when one
        # look at it reaches the score threshold
        merged = weighted_nms(concat([cands, found, more]), self.nms_iou)
        return _subset(merged, merged.scores >= self.score_threshold)

    def _looks(self, image_bgr: np.ndarray, weak: list[Window], around: list[Window],
               tiles: list[Window]) -> tuple[RawDetections, RawDetections]:
        """One network call on ``weak`` pyramid windows (their detections from the candidate threshold on,
        merged: the candidates), ``around`` windows (detections from the candidate threshold on, kept whole) and
        pyramid ``tiles`` (from the score threshold on); returns (candidates, the others)."""
        h, w = image_bgr.shape[:2]
        low = min(self.candidate_threshold, self.score_threshold)
        weak_d, other = [], []
        for i, (win, d) in enumerate(self._outputs(image_bgr, weak + around + tiles, low)):
            kind = 0 if i < len(weak) else 1 if i < len(weak) + len(around) else 2
            if len(d) and kind != 1 and win.level > 0:
                d = _subset(d, _inside_tile(d, win, w, h))
            if kind == 2:
                d = _subset(d, d.scores >= self.score_threshold)
            (weak_d if kind == 0 else other).append(d)
        return weighted_nms(concat(weak_d), self.nms_iou), concat(other)

    def _fine_tiles(self, rest: list[Window], n: int) -> list[Window]:
        """The next ``n`` fine tiles of a search, in turn."""
        if n <= 0 or not rest:
            return []
        pick = [rest[(self._search_cursor + i) % len(rest)] for i in range(min(n, len(rest)))]
        self._search_cursor = (self._search_cursor + len(pick)) % len(rest)
        return pick

    def _coarse(self, width: int, height: int) -> list[Window]:
        """The coarsest levels whose windows fit in ``search_windows - max_candidates`` (level 0 at least)."""
        wins = self.plan(width, height)
        budget = max(1, self.search_windows - self.max_candidates)
        n = 1
        for lv in range(1, wins[-1].level + 1):
            m = sum(1 for v in wins if v.level <= lv)
            if m > budget:
                break
            n = m
        return wins[:n]

    @staticmethod
    def _around(box: np.ndarray, context: float = 2.2) -> Window:
        """The square window ``context`` times a (detector) box's size around it, as the region check's."""
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = context * max(box[2] - box[0], box[3] - box[1], 8.0)
        return Window(float(cx - side / 2), float(cy - side / 2), float(side), 1)

    def _split(self, width: int, height: int) -> tuple[list[Window], list[Window]]:
        """The coarse levels that fit in 80 % of ``max_windows`` (every sweep) and the fine tiles (in turn)."""
        wins = self.plan(width, height)
        if len(wins) <= self.max_windows:
            return wins, []
        always: list[Window] = []
        for lv in range(max(v.level for v in wins) + 1):
            level = [v for v in wins if v.level == lv]
            if lv > 0 and len(always) + len(level) > 0.8 * self.max_windows:
                break
            always += level
        return always, wins[len(always):]

    def _next_sweep(self, width: int, height: int) -> list[Window]:
        always, rest = self._split(width, height)
        if not rest:
            return list(always)
        n = min(len(rest), max(1, self.max_windows - len(always)))
        pick = [rest[(self._cursor + i) % len(rest)] for i in range(n)]
        self._cursor = (self._cursor + n) % len(rest)
        return always + pick

    def sweep_length(self, width: int, height: int) -> int:
        """Windows in one sweep of a frame of this size."""
        always, rest = self._split(width, height)
        return len(always) + (min(len(rest), max(1, self.max_windows - len(always))) if rest else 0)

    def sweep_calls(self, width: int, height: int, spread: int = 1) -> int:
        """How many (non-searching) :meth:`scan` calls cover every window of a frame of this size."""
        always, rest = self._split(width, height)
        sweeps = 1 if not rest else math.ceil(len(rest) / max(1, self.max_windows - len(always)))
        sweep = self.sweep_length(width, height)
        return math.ceil(sweeps * sweep / math.ceil(sweep / max(1, spread)))

    def check_regions(self, image_bgr: np.ndarray, tight_boxes: np.ndarray, context: float = 2.2) -> Detections:
        """For each tight box, the best face in a square window ``context`` times its size around it: its
        tight box and score (NaN box and score 0 where there is none). One window per box, at the score
        threshold ``check_threshold`` (hysteresis: see the class doc)."""
        b = np.asarray(tight_boxes, np.float64).reshape(-1, 4)
        out_b, out_s = np.full((len(b), 4), np.nan), np.zeros(len(b))
        self.last_windows = 0
        if len(b) == 0:
            return Detections(out_b, out_s)
        c = (b[:, :2] + b[:, 2:]) / 2
        side = context * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clip(8)
        wins = [Window(float(cx - s / 2), float(cy - s / 2), float(s), 1) for (cx, cy), s in zip(c, side)]
        threshold = min(self.check_threshold, self.score_threshold)
        for i, (_, d) in enumerate(self._outputs(image_bgr, wins, threshold)):
            d = weighted_nms(d, self.nms_iou)
            if len(d):
                tb = self._result(d).boxes
                j = int(np.argmax(iou_matrix(b[i], tb)[0] + 1e-3 * d.scores))
                out_b[i], out_s[i] = tb[j], d.scores[j]
        return Detections(out_b, out_s)
