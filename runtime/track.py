"""Multi-face tracking: boxes from the previous frame's landmarks, checked every frame, the full detector now and then.

Per frame, :meth:`FaceTracker.boxes_for_frame` returns one tight face box per live track. A track's box is
the tight box of its previous landmarks (:func:`fa3d.runtime.preprocess.landmark_box`). Tracks are checked
so that a face that is gone (a cut, an occlusion, a person leaving) is dropped at once:

* **region check** (detectors with ``check_regions``, e.g. the default BlazeFace; every ``verify_every``
  frames): one batched detector call on a window about twice the size of each track's box (BlazeFace checks
  at a score of 0.45, below the 0.55 that starts a track: keeping a face needs less evidence). No face there:
  the track is dropped and the full detector runs on this same frame. A face there whose box overlaps the
  track's box by less than ``switch_iou``: another face took the place (the track is dropped; the face
  starts a new track with a new ID). Overlap below ``trust_iou``: the track restarts from the detector's box;
  above it the box becomes the mean of the landmark box and the detector's (``anchor_weight`` 0.5): the
  landmark box alone drifts frame after frame on some faces (the crop comes from the previous landmarks,
  whose errors feed back); on the acceptance clips (``fa3d.training.face_clips``, seeds 0 and 1) the mean
  raised the frames within 7 % NME from 90.0 / 86.9 % to 94.1 / 91.2 % (1280x720 / 640x480).
* **model confidence** below ``min_confidence``: the model no longer confirms the face (the person turned
  away, left, or was covered; or the track slid onto hair or clothes): the track is dropped at once and the
  full detector runs on the next frame (a face still there starts a new track). A new track whose first
  alignment is not confident is dropped at once (a false detection), without a re-detection.
* **agreement** (the new landmarks' box overlapping the box the crop was made from by less than
  ``agree_iou``): a miss; the full detector runs on the next frame and a track it does not confirm is
  dropped; ``max_misses`` misses in a row drop it in any case.
* a track at most two frames old that the region check does not confirm was a false detection: it is
  dropped without a re-detection, and detections on its place start no track for ``det_every_n`` frames
  (false detections are specific to one scale; the region check sees the place at another).
* the full detector (``scan`` when the detector has it: a work-bounded sweep) also runs when there is no
  track and every ``det_every_n`` frames, to find new faces.

Detections are matched to tracks by IoU (greedy, best first); a track left unmatched that still overlaps
an unmatched detection (IoU >= ``reanchor_iou``) has drifted off its face and restarts from that detection,
keeping its ID; the remaining unmatched detections start new tracks with fresh IDs (IDs are never reused);
tracks that converge on the same face are merged (the older ID survives). A new person who appears exactly
where the previous one was, at the same size, keeps the track ID: there is no appearance model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detect import FaceDetector
from .preprocess import landmark_box


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of boxes x1, y1, x2, y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda c: (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) boxes x1, y1, x2, y2 (0 when they do not overlap)."""
    return float(iou_matrix(a, b)[0, 0])


def _greedy_pairs(ious: np.ndarray, threshold: float, matched_t: set[int], matched_d: set[int]):
    """(track, detection) pairs by decreasing IoU >= threshold, each side used once; updates the matched sets."""
    for flat in np.argsort(-ious, axis=None):
        ti, di = (int(v) for v in np.unravel_index(flat, ious.shape))
        if ious[ti, di] < threshold:
            break
        if ti in matched_t or di in matched_d:
            continue
        matched_t.add(ti)
        matched_d.add(di)
        yield ti, di


@dataclass(frozen=True)
class TrackerOptions:
    det_every_n: int = 10
    min_confidence: float = 0.5
    max_faces: int = 4
    match_iou: float = 0.3
    reanchor_iou: float = 0.1
    merge_iou: float = 0.6
    max_misses: int = 2
    verify_every: int = 1  # region check every N frames (0 = never); needs a detector with check_regions
    switch_iou: float = 0.3
    trust_iou: float = 0.45
    agree_iou: float = 0.5
    anchor_weight: float = 0.5  # region check: the new box = (1 - w) * landmark box + w * detector box

    def __post_init__(self) -> None:
        if self.det_every_n < 1 or self.max_faces < 1 or self.max_misses < 1 or self.verify_every < 0:
            raise ValueError("det_every_n, max_faces and max_misses must be >= 1, verify_every >= 0")


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    misses: int = 0
    age: int = 0
    confirmed: bool = False  # the model has aligned it confidently at least once
    score: float = 1.0  # the detector's latest score for it


class FaceTracker:
    """Not thread-safe: one tracker per video stream (FaceAligner serialises its calls)."""

    def __init__(self, detector: FaceDetector | None, options: TrackerOptions = TrackerOptions()) -> None:
        self.detector = detector
        self.options = options
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._since_detect = 0
        self._frame = 0
        self._rejected: list[tuple[np.ndarray, int]] = []  # (box, until frame): unconfirmed detections
        self._rescan = False  # the full detector runs on the next frame (a new frame size, a face gone)
        self.detector_calls = 0
        self.region_checks = 0
        self.dropped = 0  # tracks ended by a check (region, confidence, agreement), for diagnostics

    @property
    def track_ids(self) -> list[int]:
        return [t.track_id for t in self._tracks]

    def reset(self) -> None:
        self._tracks.clear()
        self._rejected.clear()
        self._rescan = False
        self._since_detect = 0
        self._frame = 0

    def needs_detection(self) -> bool:
        o = self.options
        return (not self._tracks or self._rescan or self._since_detect >= o.det_every_n
                or any(t.misses > 0 for t in self._tracks))

    def frame_resized(self, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> None:
        """The next frame has another size (height, width): every box is scaled to it (the same scene at
        another resolution is the common case) and the full detector runs on that frame, which confirms,
        re-anchors or replaces the tracks as usual. IDs survive where the detector confirms them."""
        sy, sx = new_hw[0] / old_hw[0], new_hw[1] / old_hw[1]
        k = np.array([sx, sy, sx, sy])
        for t in self._tracks:  # pixel centres: x' = (x + 0.5) * s - 0.5
            t.box = (t.box + 0.5) * k - 0.5
        self._rejected = [((b + 0.5) * k - 0.5, until) for b, until in self._rejected]
        self._rescan = True

    def _verify(self, image_bgr: np.ndarray) -> bool:
        """The region check; True when a track was dropped (the full detector must run now)."""
        o = self.options
        check = getattr(self.detector, "check_regions", None)
        if (check is None or not self._tracks or o.verify_every == 0
                or self._frame % o.verify_every != 0):
            return False
        found = check(image_bgr, np.array([t.box for t in self._tracks]))
        self.region_checks += 1
        keep, new, lost = [], [], False
        for t, b, sc in zip(self._tracks, np.asarray(found.boxes, np.float64), np.asarray(found.scores)):
            seen = sc > 0 and np.isfinite(b).all()
            iou = box_iou(b, t.box) if seen else 0.0
            if iou < o.switch_iou:  # no face here any more, or another one: it starts a new track
                if seen:
                    new.append((b.copy(), sc))
                elif t.age <= 2:  # a detection that a second look does not confirm: a false one
                    self._rejected.append((t.box.copy(), self._frame + o.det_every_n))
                    continue
                lost = True
                continue
            if iou < o.trust_iou:
                t.box = b.copy()
            else:  # the detector's box holds the landmark box from drifting frame after frame
                t.box = (1 - o.anchor_weight) * t.box + o.anchor_weight * b
            t.score = float(sc)
            keep.append(t)
        self.dropped += len(self._tracks) - len(keep)
        self._tracks = keep
        for b, sc_new in new:
            if len(self._tracks) < o.max_faces and (not self._tracks or iou_matrix(
                    b, [t.box for t in self._tracks]).max() < o.merge_iou):
                self._tracks.append(_Track(self._next_id, b, score=float(sc_new)))
                self._next_id += 1
        return lost

    def boxes_for_frame(self, image_bgr: np.ndarray) -> tuple[np.ndarray, list[int], bool]:
        """Tight boxes (K, 4) and track IDs for this frame, and whether the full detector ran."""
        detected = False
        self._rejected = [(b, until) for b, until in self._rejected if until > self._frame]
        lost = self.detector is not None and self._verify(image_bgr)
        self._frame += 1
        if self.detector is not None and (lost or self.needs_detection()):
            scan = getattr(self.detector, "scan", None)
            dets = scan(image_bgr) if scan is not None else self.detector.detect(image_bgr)
            self.detector_calls += 1
            boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
            self._match(boxes, np.asarray(dets.scores, np.float64).reshape(-1))
            self._since_detect = 0
            self._rescan = False
            detected = True
        self._since_detect += 1
        boxes = np.array([t.box for t in self._tracks], dtype=np.float64).reshape(-1, 4)
        return boxes, self.track_ids, detected

    def _match(self, dets: np.ndarray, scores: np.ndarray) -> None:
        o = self.options
        ious = iou_matrix([t.box for t in self._tracks], dets)
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        for ti, di in _greedy_pairs(ious, o.match_iou, matched_t, matched_d):
            track = self._tracks[ti]
            track.score = float(scores[di])
            if track.misses > 0:  # a track that was losing its face restarts from the detector's box
                track.box = dets[di].copy()
                track.misses = 0
        # a drifted track (landmarks slid off the face) still overlaps the detection of its face: re-anchor it
        for ti, di in _greedy_pairs(ious, o.reanchor_iou, matched_t, matched_d):
            self._tracks[ti].box = dets[di].copy()
            self._tracks[ti].misses = 0
        # tracks with low confidence that the detector did not confirm are dropped
        self._tracks = [t for i, t in enumerate(self._tracks) if i in matched_t or t.misses == 0]
        rejected = np.array([b for b, _ in self._rejected]).reshape(-1, 4)
        for di in range(len(dets)):
            if di in matched_d or (len(rejected) and iou_matrix(dets[di], rejected).max() >= 0.5):
                continue
            if len(self._tracks) >= o.max_faces:  # full: a clearer face replaces the least certain track
                worst = min(range(len(self._tracks)), key=lambda i: self._tracks[i].score)
                if self._tracks[worst].score >= scores[di] - 0.05:
                    continue
                del self._tracks[worst]
                self.dropped += 1
            self._tracks.append(_Track(self._next_id, dets[di].copy(), score=float(scores[di])))
            self._next_id += 1

    def update(self, landmarks: np.ndarray, confidences: np.ndarray) -> None:
        """Feed this frame's results (in the order of :meth:`boxes_for_frame`): next frame's boxes."""
        o = self.options
        lm = np.asarray(landmarks, np.float64)
        conf = np.asarray(confidences, np.float64).reshape(-1)
        if len(lm) != len(self._tracks) or len(conf) != len(self._tracks):
            raise ValueError(f"update() got {len(lm)} faces for {len(self._tracks)} tracks")
        keep = []
        for t, pts, c in zip(self._tracks, lm, conf):
            t.age += 1
            new_box = landmark_box(pts)[0]
            # a new track's box is the detector's, less precise than landmarks: agreement is checked later
            if c >= o.min_confidence and (not t.confirmed or box_iou(new_box, t.box) >= o.agree_iou):
                t.box = new_box
                t.misses = 0
                t.confirmed = True
            elif not t.confirmed:  # a detection the model does not take for a face: gone, no re-detection
                t.misses = o.max_misses + 1
            elif not c >= o.min_confidence:  # the model no longer confirms the face (it turned away, left, was
                t.misses = o.max_misses + 1  # covered): dropped at once; the detector looks on the next frame
                self._rescan = True
            else:  # landmarks that left the box they were looked for in
                t.misses += 1
            if t.misses <= o.max_misses:
                keep.append(t)
            else:
                self.dropped += 1
        # merge tracks that now cover the same face (older ID wins: tracks are kept in creation order)
        merged: list[_Track] = []
        for t in keep:
            if merged and iou_matrix(t.box, [m.box for m in merged]).max() >= o.merge_iou:
                continue
            merged.append(t)
        self._tracks = merged
