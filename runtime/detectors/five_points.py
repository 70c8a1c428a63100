"""Tight 68-landmark boxes from five facial keypoints (YuNet and SCRFD give them): no per-detector calibration."""

from __future__ import annotations

import cv2
import numpy as np

from ..schema import mean_shape


def _five_from_mean() -> np.ndarray:
    """The mean shape's five points, image-left first: eye, eye, nose tip, mouth corner, mouth corner."""
    m = np.asarray(mean_shape(), dtype=np.float64)
    pts = np.stack([m[36:42].mean(0), m[42:48].mean(0), m[30], m[48], m[54]])
    return pts[:, :2] * np.array([1.0, -1.0])  # model frame (y up) -> image orientation (y down)


def box_from_five_points(kps: np.ndarray) -> np.ndarray:
    """Tight 68-landmark boxes (K, 4) from five keypoints (K, 5, 2): the box of the mean shape fitted to them.

    A 2D similarity (rotation, scale, shift) maps the mean shape's five points onto the keypoints; the
    box of the whole mapped mean shape is returned. Right for near-frontal faces, approximate for profiles.
    """
    k = np.asarray(kps, dtype=np.float64).reshape(-1, 5, 2)
    src = _five_from_mean()
    m68 = np.asarray(mean_shape(), dtype=np.float64)[:, :2] * np.array([1.0, -1.0])
    out = np.empty((len(k), 4))
    for i, dst in enumerate(k):
        a, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
        if a is None:  # degenerate points: fall back to the keypoints' own box, enlarged
            c, half = dst.mean(0), np.ptp(dst, axis=0).max()
            out[i] = [c[0] - half, c[1] - half, c[0] + half, c[1] + half]
            continue
        p = m68 @ a[:, :2].T + a[:, 2]
        out[i] = np.r_[p.min(0), p.max(0)]
    return out
