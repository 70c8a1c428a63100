"""OpenCV's bundled frontal-face Haar cascade (``--detector haar``; needs no model file).

The cascade file ``haarcascade_frontalface_default.xml`` ships with ``opencv-python<5`` (5.x dropped the
cascades). Its square box is mapped to the tight 68-landmark box by :data:`HAAR_TO_TIGHT`; how that was
measured, and how the cascade compares with BlazeFace, is in ``docs/detection-tracking.md``. It finds frontal
faces only, so it declares no region check (the tracker keeps profile faces from their landmarks).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..boxes import BoxMapping
from .base import DetectorBase, DetectorError, Detections

#: the cascade's box -> the tight landmark box (docs/detection-tracking.md, "Haar")
HAAR_TO_TIGHT = BoxMapping(dx=0.0, dy=0.140, sw=0.850, sh=0.827)
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


def _gray(image_bgr: np.ndarray) -> np.ndarray:
    if image_bgr.ndim == 2:
        return image_bgr
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)


class HaarDetector(DetectorBase):
    """OpenCV's frontal-face cascade; frames are downscaled to ``max_side`` for speed.

    Defaults (max side 320 px, faces from 24 px there = 48 px in a 640x480 frame, scale step 1.15,
    6 neighbours) trade small faces for speed (docs/detection-tracking.md).
    """

    def __init__(self, *, scale_factor: float = 1.15, min_neighbors: int = 6, min_size: int = 24,
                 max_side: int = 320, mapping: BoxMapping = HAAR_TO_TIGHT) -> None:
        data = getattr(cv2, "data", None)
        path = Path(data.haarcascades) / HAAR_CASCADE if data is not None else None
        if path is None or not path.is_file():
            raise DetectorError(
                f"OpenCV's bundled {HAAR_CASCADE} is missing (opencv-python 5.x dropped the cascades); "
                "install opencv-python<5 or use --detector blazeface")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorError(f"{path}: OpenCV could not load the cascade")
        self.scale_factor, self.min_neighbors, self.min_size, self.max_side = (
            scale_factor, min_neighbors, min_size, max_side)
        self.mapping = mapping

    def detect(self, image_bgr: np.ndarray) -> Detections:
        g = _gray(image_bgr)
        if min(g.shape[:2]) * min(1.0, self.max_side / max(*g.shape[:2], 1)) < self.min_size:
            return Detections.empty()  # no face fits (and resize would make 0 rows)
        k = min(1.0, self.max_side / max(g.shape[:2]))
        if k < 1.0:
            g = cv2.resize(g, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        g = cv2.equalizeHist(g)
        found = self._cascade.detectMultiScale(g, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(self.min_size, self.min_size))
        if len(found) == 0:
            return Detections.empty()
        b = np.asarray(found, dtype=np.float64)
        b[:, 2:] += b[:, :2]
        b = (b + 0.5) / k - 0.5  # back to full-resolution pixel centres
        b = b[np.argsort(-(b[:, 2] - b[:, 0]))]  # largest first (the cascade has no useful score)
        return Detections(self.mapping.apply(b), np.ones(len(b)))
