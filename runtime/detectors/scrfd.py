"""An insightface SCRFD ONNX with keypoints (a ``*_kps`` model: 9 outputs, scores, boxes and keypoints for
strides 8, 16 and 32), run by ONNX Runtime on a ``input_size`` square letterbox of the frame.

Not shipped with fa3d; tested on synthetic outputs and on corrupt files only. The file is checked when it
is loaded (it loads, has one image input and 9 outputs, and one blank input gives outputs of the sizes the
decoding needs), so a corrupt or wrong file is a :class:`~fa3d.runtime.detectors.base.DetectorError` up front.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from ..boxes import nms
from .base import DetectorBase, DetectorError, Detections
from .five_points import box_from_five_points
from .session import OrtSession

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def decode_scrfd(outputs: list[np.ndarray], input_size: int, scale: float, score_threshold: float,
                 nms_threshold: float, strides: tuple[int, ...] = STRIDES,
                 num_anchors: int = ANCHORS_PER_CELL) -> Detections:
    """Decode SCRFD outputs ``[scores x3, distances x3, keypoints x3]`` (per stride) into tight boxes."""
    n = len(strides)
    all_boxes, all_scores, all_kps = [], [], []
    for i, s in enumerate(strides):
        scores = np.asarray(outputs[i]).reshape(-1)
        dist = np.asarray(outputs[i + n]).reshape(-1, 4) * s
        kps = np.asarray(outputs[i + 2 * n]).reshape(-1, 10) * s
        g = input_size // s
        ys, xs = np.mgrid[:g, :g]
        centres = np.repeat(np.stack([xs.ravel(), ys.ravel()], 1) * s, num_anchors, axis=0).astype(np.float64)
        keep = scores >= score_threshold
        c = centres[keep]
        all_scores.append(scores[keep])
        all_boxes.append(np.concatenate([c - dist[keep, :2], c + dist[keep, 2:]], 1))
        all_kps.append(np.tile(c, 5) + kps[keep])
    scores = np.concatenate(all_scores).astype(np.float64)
    if len(scores) == 0:
        return Detections.empty()
    boxes, kps = np.concatenate(all_boxes) * scale, np.concatenate(all_kps) * scale
    keep = nms(boxes, scores, nms_threshold)
    return Detections(box_from_five_points(kps[keep].reshape(-1, 5, 2)), scores[keep])


def check_scrfd_outputs(outputs: list[np.ndarray], input_size: int, where: str) -> None:
    """Refuse outputs whose sizes are not those of an SCRFD ``*_kps`` model at ``input_size``."""
    n = len(STRIDES)
    if len(outputs) != 3 * n:
        raise DetectorError(f"{where}: expected an SCRFD model with keypoints (9 outputs), got {len(outputs)}; "
                            "use a *_kps SCRFD model")
    for i, s in enumerate(STRIDES):
        a = (input_size // s) ** 2 * ANCHORS_PER_CELL
        got = [np.asarray(outputs[i + j * n]).size for j in range(3)]
        if got != [a, 4 * a, 10 * a]:
            raise DetectorError(f"{where}: outputs for stride {s} hold {got} numbers, an SCRFD *_kps model "
                                f"gives {[a, 4 * a, 10 * a]} at input {input_size}; is the file an SCRFD model?")


class ScrfdDetector(DetectorBase):
    def __init__(self, model_path: str | os.PathLike, *, input_size: int = 640, score_threshold: float = 0.5,
                 nms_threshold: float = 0.4) -> None:
        self._sess = OrtSession(model_path, what="SCRFD")
        dims = self._sess.input_dims
        if isinstance(dims[2], int) and dims[2] > 0:  # a model exported at a fixed size runs at that size
            input_size = dims[2]
        self.input_size, self.score_threshold, self.nms_threshold = input_size, score_threshold, nms_threshold
        blank = np.zeros((1, 3, input_size, input_size), np.float32)
        check_scrfd_outputs(self._sess.run(blank), input_size, str(self._sess.path))

    def detect(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        k = self.input_size / max(h, w)
        resized = cv2.resize(image_bgr, (max(1, int(round(w * k))), max(1, int(round(h * k)))))
        canvas = np.zeros((self.input_size, self.input_size, 3), np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        blob = cv2.dnn.blobFromImage(canvas, 1 / 128, (self.input_size, self.input_size), (127.5, 127.5, 127.5),
                                     swapRB=True)
        outs = self._sess.run(blob)
        return decode_scrfd(outs, self.input_size, 1 / k, self.score_threshold, self.nms_threshold)
