"""The one record every dataset loader yields and the training loop consumes.

All coordinates are 0-based OpenCV pixels of ``image`` (x right, y down). ``z`` is relative depth in the
same pixel scale, larger = nearer the camera; its origin is arbitrary on load (the training loop moves it
to the centroid of the 68 landmarks). Anything a dataset does not have is ``None``; the loss terms for
missing labels are skipped, never filled with zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceSample:
    image: np.ndarray  # (H, W, 3) uint8, BGR
    box: np.ndarray  # (4,) float32 x1, y1, x2, y2: the face box (tight box of the 68 landmarks if known)
    name: str = ""
    source: str = ""  # dataset name
    landmarks: np.ndarray | None = None  # (68, 3) float32
    landmarks_weight: float = 1.0  # e.g. < 1 for teacher pseudo-labels
    ypr: np.ndarray | None = None  # (3,) float32 yaw, pitch, roll in degrees (package convention)
    pose_weight: float = 1.0
    pts21: np.ndarray | None = None  # (21, 2) float32, AFLW order; NaN where not visible
    yaw_gt: float | None = None  # a real yaw label when only yaw is known (AFLW), degrees
    dense: np.ndarray | None = None  # (N, 3) float32, teacher dense points
    dense_weight: float = 1.0

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{self.name or 'sample'}: image must be (H, W, 3) uint8 BGR, got "
                             f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
        checks = {"box": (4,), "landmarks": (68, 3), "ypr": (3,), "pts21": (21, 2)}
        for key, shape in checks.items():
            v = getattr(self, key)
            if v is not None and np.shape(v) != shape:
                raise ValueError(f"{self.name or 'sample'}: {key} must have shape {shape}, got {np.shape(v)}")
        if self.dense is not None and (np.ndim(self.dense) != 2 or np.shape(self.dense)[1] != 3):
            raise ValueError(f"{self.name or 'sample'}: dense must be (N, 3), got {np.shape(self.dense)}")
