"""MediaPipe BlazeFace (short range) decoding: anchors, boxes with six keypoints, sigmoid scores, weighted NMS.

The network (``assets/detector/blazeface_short_range.onnx``, converted once from ``mediapipe==0.10.21``: see
docs/detection-tracking.md) takes ``(B, 3, 128, 128)`` float32 RGB in [-1, 1] and returns ``regressors``
(B, 896, 16) and ``classificators`` (B, 896, 1). The anchor and decoding settings are those of MediaPipe's
``face_detection_short_range`` graph (SsdAnchorsCalculator, TensorsToDetectionsCalculator): strides 8 and 16
with 2 and 6 anchors per cell (16x16x2 + 8x8x6 = 896), fixed anchor size, centres at cell centres; per anchor
``dx, dy, w, h`` then six keypoints ``(x, y)`` in input pixels relative to the anchor centre;
score = sigmoid(clip(logit, -100, 100)); weighted NMS at IoU 0.3.

Keypoints, in this order (the person's right/left): right eye, left eye, nose tip, mouth centre,
right ear tragion, left ear tragion.

This module only decodes (numpy); :mod:`fa3d.runtime.detectors.blazeface_detector` runs the network over a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..boxes import weighted_nms as boxes_weighted_nms

INPUT_SIZE = 128
NUM_KEYPOINTS = 6
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion")


def short_range_anchors(size: int = INPUT_SIZE) -> np.ndarray:
    """Anchor centres (896, 2) in input pixels, in the network's output order."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        g = size // stride
        ys, xs = np.mgrid[:g, :g]
        c = (np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * stride
        out.append(np.repeat(c, per_cell, axis=0))
    return np.concatenate(out).astype(np.float64)


ANCHORS = short_range_anchors()


@dataclass(frozen=True)
class RawDetections:
    """Decoded detections in the network's input pixels (before or after NMS)."""

    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    keypoints: np.ndarray  # (K, 6, 2)
    scores: np.ndarray  # (K,)

    @classmethod
    def empty(cls) -> "RawDetections":
        return cls(np.zeros((0, 4)), np.zeros((0, NUM_KEYPOINTS, 2)), np.zeros(0))

    def __len__(self) -> int:
        return len(self.scores)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(logits, np.float64), -100.0, 100.0)))


def decode(regressors: np.ndarray, logits: np.ndarray, score_threshold: float,
           anchors: np.ndarray = ANCHORS) -> RawDetections:
    """One image's outputs (896, 16) and (896,) or (896, 1) -> the detections above the threshold."""
    s = sigmoid_scores(np.asarray(logits).reshape(-1))
    keep = np.flatnonzero(s >= score_threshold)
    if len(keep) == 0:
        return RawDetections.empty()
    r = np.asarray(regressors, np.float64).reshape(-1, 16)[keep]
    a = anchors[keep]
    c = r[:, :2] + a
    half = r[:, 2:4] / 2
    boxes = np.concatenate([c - half, c + half], 1)
    kps = r[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + a[:, None, :]
    return RawDetections(boxes, kps, s[keep])


def weighted_nms(dets: RawDetections, iou_threshold: float = 0.3, max_out: int | None = None) -> RawDetections:
    """MediaPipe's weighted NMS (:func:`fa3d.runtime.boxes.weighted_nms`) of decoded detections, best first."""
    if len(dets) == 0:
        return dets
    return RawDetections(*boxes_weighted_nms(dets.boxes, dets.keypoints, dets.scores, iou_threshold, max_out))


def concat(parts: list[RawDetections]) -> RawDetections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return RawDetections.empty()
    return RawDetections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.keypoints for p in parts]),
                         np.concatenate([p.scores for p in parts]))
