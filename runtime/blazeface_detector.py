"""The default face detector: BlazeFace short range (:mod:`fa3d.runtime.blazeface`) over a frame of any size.

The network sees 128x128 pixels and finds faces from about ``MIN_FACE_IN_INPUT`` pixels to the whole input.
A frame is covered by a pyramid of square windows (:func:`plan_windows`): the whole frame letterboxed to a
square (zero padding, as MediaPipe does), then tiles shrinking by a constant factor of at most 2 per level,
down to the tile side at which a face of ``min_face`` frame pixels is still ``MIN_FACE_IN_INPUT`` input pixels. Tiles of a level
overlap by the largest face that the level above cannot see, so every face lies whole inside some window
of the level responsible for its size. All windows of a call go through ONNX Runtime in one batch;
detections are mapped back to the frame, detections cut by a tile edge are dropped, and the rest are merged
by MediaPipe's weighted NMS. Work per call is bounded by ``max_windows``: :meth:`BlazeFaceDetector.detect`
runs every window (use it for single images), :meth:`BlazeFaceDetector.scan` (used by the tracker) runs the
coarse levels every call and the finer tiles in turn, so a full sweep of a large frame spreads over a few calls.
:meth:`BlazeFaceDetector.check_regions` looks again at known faces (the tracker's region check).

Boxes are mapped to the tight 68-landmark box by :data:`BLAZE_TO_TIGHT` (how it was measured: see there).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .blazeface import INPUT_SIZE, RawDetections, concat, decode, weighted_nms
from .detect import BoxMapping, Detections
from .track import iou_matrix

#: smallest face (tight-box width) the short-range network finds reliably, in input pixels. Measured on 150
#: aflw19k val faces pasted on 128x128 clutter (one window): found 1 % at 10 px, 45 % at 14, 82 % at 18,
#: 89 % at 22, 93 % at 28, 98 % at 40, 97 % at 64, 96 % at 96 and 87 % at 120 px (the crop filling the input)
MIN_FACE_IN_INPUT = 22.0
MODEL_FILE = "detector/blazeface_short_range.onnx"

#: BlazeFace box -> tight 68-landmark box, measured by ``python -m fa3d.training.detector_fit
#: ../shared/data/aflw19k --n 1500`` (seed 0): 1,500 random aflw19k *train* crops pasted on 320x320 clutter
#: backgrounds at tight-box widths of 60-160 px, this detector's own boxes (the whole pyramid) paired with the
#: tight box of the teacher's 68 points; 1,481 faces detected (all yaws), medians. The landmark box is a
#: little lower and smaller than BlazeFace's: dy = +0.041 h, size 0.935 w x 0.947 h (p10-p90: dx -0.06..+0.04,
#: dy -0.02..+0.09, width 0.85..1.05, height 0.86..1.11). Median IoU with the tight box 0.81 raw, 0.84 mapped
#: (p10 0.72). Per yaw bin the height factor grows with yaw (0.92 at 0-30, 0.96 at 30-60, 1.04 at 60-90 deg).
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


class BlazeFaceDetector:
    """BlazeFace short range on ONNX Runtime (CPU), any frame size, several faces; returns tight boxes.

    ``min_face``: smallest face (detector box width, about the tight box width) to look for, frame pixels;
    ``max_windows``: the most network inputs per :meth:`scan` call (coarse levels always run);
    ``mapping=None`` leaves the detector's own boxes (for measuring the mapping).
    ``score_threshold`` 0.55 rather than MediaPipe's 0.5: over a pyramid of many windows the false positives
    add up. On 1280x720 face-free frames (8 of each background kind; aflw19k val faces for recall, 15 per
    yaw bin at 40, 80 and 160 px) 0.5 / 0.55 / 0.6 gave 6.6 / 3.9 / 2.0 false positives per frame on the
    mosaic of face-crop blocks (0.25 / 0.12 / 0.12 on clutter, 0 on noise); 0.6 lost up to 7 points of
    recall at 60-90 degrees of yaw against 0.5, 0.55 lost nothing but on 40 px profile faces. On the first
    1280x720 acceptance clip (``fa3d.training.face_clips``, seed 0, the tracker of that day) faces were found
    in 96.9 % of frames at 0.6 and 99.7 % at 0.55.
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, score_threshold: float = 0.55,
                 nms_iou: float = 0.3, min_face: float = 40.0, max_windows: int = 24, threads: int | None = 1,
                 mapping: BoxMapping | None = BLAZE_TO_TIGHT, check_threshold: float = 0.45,
                 session=None) -> None:
        """``session``: where the network runs (``run(batch) -> [regressors, classificators]``, e.g. the
        detector's TensorRT engine, :mod:`fa3d.runtime.detector_engine`); default ONNX Runtime on the CPU."""
        if model_path is None:
            from .default_model import asset_path

            model_path = asset_path(MODEL_FILE)
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: BlazeFace ONNX not found; reinstall fa3d or use --detector haar")
        if not 0.0 < score_threshold < 1.0 or min_face < 1 or max_windows < 1:
            raise ValueError("score_threshold must be in (0, 1), min_face >= 1 and max_windows >= 1")
        if session is None:
            from .detector_engine import OrtDetectorSession

            session = OrtDetectorSession(path, threads=threads)
        self.session = session
        self.score_threshold, self.nms_iou, self.min_face = score_threshold, nms_iou, min_face
        self.check_threshold = check_threshold
        self.max_windows, self.mapping = max_windows, mapping
        self._plans: dict[tuple[int, int], list[Window]] = {}
        self._cursor = 0
        self.last_windows = 0  # network inputs of the latest call

    def plan(self, width: int, height: int) -> list[Window]:
        key = (width, height)
        if key not in self._plans:
            self._plans = {key: plan_windows(width, height, self.min_face)}
            self._cursor = 0
        return self._plans[key]

    def _infer(self, rgb: np.ndarray, windows: list[Window], threshold: float | None = None) -> list[RawDetections]:
        """Per window, its detections in frame pixels (one batched network call)."""
        threshold = self.score_threshold if threshold is None else threshold
        ins = [window_input(rgb, win) for win in windows]
        x = np.stack([i[0] for i in ins]).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
        reg, cls = self.session.run(x)
        self.last_windows = len(windows)
        out = []
        for j, (_, m) in enumerate(ins):
            d = decode(reg[j], cls[j], threshold)
            out.append(_to_frame(d, m) if len(d) else d)
        return out

    def _run(self, rgb: np.ndarray, windows: list[Window]) -> RawDetections:
        h, w = rgb.shape[:2]
        parts = []
        for win, d in zip(windows, self._infer(rgb, windows)):
            if len(d) and win.level > 0:
                d = _subset(d, _inside_tile(d, win, w, h))
            parts.append(d)
        return weighted_nms(concat(parts), self.nms_iou)

    def detect_raw(self, image_bgr: np.ndarray, windows: list[Window] | None = None) -> RawDetections:
        """Detections in frame pixels with BlazeFace's own boxes and keypoints, best first (all windows)."""
        h, w = image_bgr.shape[:2]
        windows = self.plan(w, h) if windows is None else windows
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        return self._run(rgb, windows)

    def _result(self, d: RawDetections) -> Detections:
        boxes = d.boxes if self.mapping is None else self.mapping.apply(d.boxes)
        return Detections(boxes.reshape(-1, 4), d.scores, keypoints=d.keypoints)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Every face from ``min_face`` pixels up, in one call over the whole pyramid (tight boxes, best first)."""
        return self._result(self.detect_raw(image_bgr))

    def scan(self, image_bgr: np.ndarray) -> Detections:
        """Like :meth:`detect` with at most ``max_windows`` network inputs: the coarse levels that fit in
        80 % of the budget run every call, the other windows in turn (a small face is found within a few
        calls; the number of calls a full sweep takes is ``sweep_calls``)."""
        h, w = image_bgr.shape[:2]
        always, rest = self._split(w, h)
        if not rest:
            return self.detect(image_bgr)
        n = max(1, self.max_windows - len(always))
        pick = [rest[(self._cursor + i) % len(rest)] for i in range(min(n, len(rest)))]
        self._cursor = (self._cursor + len(pick)) % len(rest)
        return self._result(self.detect_raw(image_bgr, always + pick))

    def _split(self, width: int, height: int) -> tuple[list[Window], list[Window]]:
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

    def sweep_calls(self, width: int, height: int) -> int:
        """How many :meth:`scan` calls cover every window of a frame of this size."""
        always, rest = self._split(width, height)
        return 1 if not rest else math.ceil(len(rest) / max(1, self.max_windows - len(always)))

    def check_regions(self, image_bgr: np.ndarray, tight_boxes: np.ndarray, context: float = 2.2) -> Detections:
        """For each tight box, the best face in a square window ``context`` times its size around it: its
        tight box and score (NaN box and score 0 where there is none). One batched network call.

        The score threshold here is ``check_threshold`` (0.45), lower than for new faces: keeping a face
        that is known to be there needs less evidence than finding one (hysteresis; profile faces score
        near the detection threshold and would otherwise flicker in and out)."""
        b = np.asarray(tight_boxes, np.float64).reshape(-1, 4)
        out_b, out_s = np.full((len(b), 4), np.nan), np.zeros(len(b))
        if len(b) == 0:
            return Detections(out_b, out_s)
        c = (b[:, :2] + b[:, 2:]) / 2
        side = context * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]).clip(8)
        wins = [Window(float(cx - s / 2), float(cy - s / 2), float(s), 1) for (cx, cy), s in zip(c, side)]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        for i, d in enumerate(self._infer(rgb, wins, min(self.check_threshold, self.score_threshold))):
            d = weighted_nms(d, self.nms_iou)
            if len(d):
                tb = self._result(d).boxes
                j = int(np.argmax(iou_matrix(b[i], tb)[0] + 1e-3 * d.scores))
                out_b[i], out_s[i] = tb[j], d.scores[j]
        return Detections(out_b, out_s)
