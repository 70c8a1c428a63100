"""Box geometry, the one implementation: IoU, non-maximum suppression, and detector-box -> tight-box mappings.

Boxes are ``x1, y1, x2, y2`` in 0-based pixels, as float arrays of shape (K, 4). A box with x2 <= x1 or
y2 <= y1 has area 0 (it overlaps nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of boxes x1, y1, x2, y2 (0 where either box is empty)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (4,) boxes x1, y1, x2, y2 (0 when they do not overlap)."""
    return float(iou_matrix(a, b)[0, 0])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Hard non-maximum suppression: indices of the boxes kept, best score first; a box is dropped when it
    overlaps a better kept one by IoU > ``iou_threshold``."""
    b, s = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    alive = np.ones(len(order), bool)
    for i, idx in enumerate(order):
        if not alive[i]:
            continue
        keep.append(int(idx))
        alive[i + 1:] &= iou_matrix(b[idx], b[order[i + 1:]])[0] <= iou_threshold
    return np.asarray(keep, np.int64)


def weighted_nms(boxes: np.ndarray, points: np.ndarray, scores: np.ndarray, iou_threshold: float,
                 max_out: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression: the best remaining box and every one overlapping it by
    IoU > ``iou_threshold`` form a cluster; the output is the score-weighted mean of the cluster's boxes and
    points (K, P, 2) with the best score. Returns (boxes, points, scores), best first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    points = np.asarray(points, np.float64).reshape(len(boxes), -1, 2)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) == 0:
        return boxes, points, scores
    order = np.argsort(-scores, kind="stable")
    boxes, points, scores = boxes[order], points[order], scores[order]
    alive = np.ones(len(scores), bool)
    out_b, out_p, out_s = [], [], []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        idx = np.flatnonzero(alive)
        members = np.union1d(idx[iou_matrix(boxes[i], boxes[idx])[0] > iou_threshold], [i])
        w = scores[members][:, None]
        out_b.append((boxes[members] * w).sum(0) / w.sum())
        out_p.append((points[members] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[i])
        alive[members] = False
        if max_out is not None and len(out_s) >= max_out:
            break
    return np.array(out_b), np.array(out_p).reshape(len(out_s), points.shape[1], 2), np.array(out_s)


@dataclass(frozen=True)
class BoxMapping:
    """Detector box -> tight landmark box: centre shifted by (dx*w, dy*h), size scaled by (sw, sh)."""

    dx: float = 0.0
    dy: float = 0.0
    sw: float = 1.0
    sh: float = 1.0

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        cx, cy = (b[:, 0] + b[:, 2]) / 2 + self.dx * w, (b[:, 1] + b[:, 3]) / 2 + self.dy * h
        return np.stack([cx - self.sw * w / 2, cy - self.sh * h / 2, cx + self.sw * w / 2, cy + self.sh * h / 2], 1)

    @classmethod
    def fit(cls, detector_boxes: np.ndarray, tight_boxes: np.ndarray) -> "BoxMapping":
        """Robust (median) fit of the mapping from paired boxes (K, 4): how the detectors' mappings were measured."""
        d, t = np.asarray(detector_boxes, np.float64), np.asarray(tight_boxes, np.float64)
        w, h = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
        return cls(dx=float(np.median(((t[:, 0] + t[:, 2]) - (d[:, 0] + d[:, 2])) / 2 / w)),
                   dy=float(np.median(((t[:, 1] + t[:, 3]) - (d[:, 1] + d[:, 3])) / 2 / h)),
                   sw=float(np.median((t[:, 2] - t[:, 0]) / w)), sh=float(np.median((t[:, 3] - t[:, 1]) / h)))
