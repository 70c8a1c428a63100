"""YuNet (``cv2.FaceDetectorYN``) with a user-supplied ONNX file, e.g. ``face_detection_yunet_2023mar.onnx``.

Not shipped with fa3d; tested on synthetic outputs and on corrupt files only. The file is checked when it
is loaded (OpenCV loads it, then one small blank frame must run and give YuNet's 15 columns), so a corrupt
or wrong file is a :class:`~fa3d.runtime.detectors.base.DetectorError` up front, not a traceback on the
first frame. Frames larger than ``max_side`` are downscaled first: the network runs at the frame's size, so
its memory would otherwise grow with the frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .base import DetectorBase, DetectorError, Detections
from .five_points import box_from_five_points
from .session import one_line

#: YuNet's rows: x, y, w, h, five keypoints (x, y), score
YUNET_COLUMNS = 15


def parse_yunet(faces: np.ndarray | None) -> Detections:
    """YuNet rows (K, 15): x, y, w, h, five keypoints (x, y), score -> tight boxes, best first."""
    if faces is None or len(faces) == 0:
        return Detections.empty()
    f = np.asarray(faces, dtype=np.float64).reshape(len(faces), -1)
    if f.shape[1] != YUNET_COLUMNS:
        raise DetectorError(f"YuNet returned rows of {f.shape[1]} numbers, expected {YUNET_COLUMNS}; "
                            "is the file a YuNet model?")
    f = f[np.argsort(-f[:, 14])]
    return Detections(box_from_five_points(f[:, 4:14].reshape(-1, 5, 2)), f[:, 14])


class YuNetDetector(DetectorBase):
    """``cv2.FaceDetectorYN`` on frames of at most ``max_side`` pixels (larger ones are downscaled)."""

    def __init__(self, model_path: str | os.PathLike, *, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, top_k: int = 50, max_side: int = 1920) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise DetectorError(f"{self.path}: YuNet model file not found")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError("this OpenCV has no cv2.FaceDetectorYN (needs OpenCV >= 4.5.4)")
        try:
            self._det = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), score_threshold,
                                                  nms_threshold, top_k)
        except cv2.error as e:
            raise DetectorError(f"{self.path}: OpenCV cannot load this YuNet model ({one_line(e)})") from None
        self._size: tuple[int, int] | None = None
        self.max_side = max_side
        self.detect(np.zeros((64, 64, 3), np.uint8))  # a wrong network fails here, at load

    def detect(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        k = min(1.0, self.max_side / max(h, w, 1))
        if k < 1.0:
            image_bgr = cv2.resize(image_bgr, (max(1, round(w * k)), max(1, round(h * k))),
                                   interpolation=cv2.INTER_AREA)
            h, w = image_bgr.shape[:2]
        try:
            if self._size != (w, h):
                self._det.setInputSize((w, h))
                self._size = (w, h)
            _, faces = self._det.detect(image_bgr)
        except cv2.error as e:
            raise DetectorError(f"{self.path}: the YuNet model failed to run ({one_line(e)}); "
                                "is the file a YuNet model?") from None
        d = parse_yunet(faces)
        if k < 1.0 and len(d.scores):
            d = Detections((d.boxes + 0.5) / k - 0.5, d.scores)
        return d
