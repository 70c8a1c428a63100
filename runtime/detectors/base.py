"""Face detectors behind one interface; every detector returns TIGHT 68-landmark boxes.

The preprocessing (:mod:`fa3d.runtime.preprocess`) expects the tight box of the 68 landmarks, so each
adapter maps its detector's box to that:

* :class:`fa3d.runtime.blazeface_detector.BlazeFaceDetector` (the default): MediaPipe's BlazeFace short-range
  CNN, shipped as ONNX, run by ONNX Runtime over a pyramid of windows (any frame size, several faces).
* :class:`HaarDetector` (``--detector haar``; needs no model file): OpenCV's bundled
  ``haarcascade_frontalface_default.xml`` (``opencv-python<5``; 5.x dropped the cascades). Its square box
  is mapped by :data:`HAAR_TO_TIGHT`, measured once with this detector's default parameters (scale step
  1.15, 6 neighbours) on 1,200 random AFLW validation crops (``../shared/data/aflw19k``, teacher 68-point
  labels; crops padded by 60 px and upscaled 2x) against the tight box of the 68 points, on the 515
  detected faces with |yaw| < 45 deg (:meth:`BoxMapping.fit`, medians): centre shift dx = +0.000 w,
  dy = +0.140 h (the cascade's box sits higher than the landmarks: it covers the forehead, not the chin),
  size 0.850 w x 0.827 h; p10-p90 spread dx -0.13..+0.15, dy 0.09..0.19, width 0.77..0.97, height
  0.74..0.95. Median IoU with the tight box: 0.58 raw, 0.74 mapped (p10 0.55). The cascade found 67% of
  the faces with |yaw| < 30 deg, 27% at 30-60 deg and 2% beyond: profile faces are kept by the tracker
  (boxes from landmarks), not found by this detector.
* :class:`YuNetDetector` (``cv2.FaceDetectorYN``, user-supplied ``face_detection_yunet_*.onnx``) and
  :class:`ScrfdDetector` (an insightface SCRFD ONNX with keypoints, run by ONNX Runtime): both give five
  keypoints; the tight box is that of the mean shape fitted to them (:func:`box_from_five_points`),
  which needs no per-detector calibration. Neither model ships with fa3d; these adapters are tested on
  synthetic outputs only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .schema import mean_shape


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (K, 4) tight landmark boxes x1, y1, x2, y2 (0-based pixels), best first
    scores: np.ndarray  # (K,)
    keypoints: np.ndarray | None = None  # (K, P, 2) the detector's own keypoints, when it has them


class FaceDetector(Protocol):
    def detect(self, image_bgr: np.ndarray) -> Detections: ...


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
        """Robust (median) fit of the mapping from paired boxes (K, 4) -- how HAAR_TO_TIGHT was measured."""
        d, t = np.asarray(detector_boxes, np.float64), np.asarray(tight_boxes, np.float64)
        w, h = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
        return cls(dx=float(np.median(((t[:, 0] + t[:, 2]) - (d[:, 0] + d[:, 2])) / 2 / w)),
                   dy=float(np.median(((t[:, 1] + t[:, 3]) - (d[:, 1] + d[:, 3])) / 2 / h)),
                   sw=float(np.median((t[:, 2] - t[:, 0]) / w)), sh=float(np.median((t[:, 3] - t[:, 1]) / h)))


#: measured as described in the module docstring
HAAR_TO_TIGHT = BoxMapping(dx=0.0, dy=0.140, sw=0.850, sh=0.827)
HAAR_CASCADE = "haarcascade_frontalface_default.xml"


def _gray(image_bgr: np.ndarray) -> np.ndarray:
    if image_bgr.ndim == 2:
        return image_bgr
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)


class HaarDetector:
    """OpenCV's bundled frontal-face cascade; frames are downscaled to ``max_side`` for speed.

    Defaults (max side 320 px, faces from 24 px there = 48 px in a 640x480 frame, scale step 1.15,
    6 neighbours) trade small faces for speed: on the 90-frame 640x480 sample clip they find a face in
    26 of 30 sampled frames with no double detection, against 27 of 30 with 2 false doubles at full
    resolution, at less than half the cost (on our loaded 2-core CPU: ~95 ms against ~210 ms a call).
    """

    def __init__(self, *, scale_factor: float = 1.15, min_neighbors: int = 6, min_size: int = 24,
                 max_side: int = 320, mapping: BoxMapping = HAAR_TO_TIGHT) -> None:
        data = getattr(cv2, "data", None)
        path = Path(data.haarcascades) / HAAR_CASCADE if data is not None else None
        if path is None or not path.is_file():
            raise FileNotFoundError(
                f"OpenCV's bundled {HAAR_CASCADE} is missing (opencv-python 5.x dropped the cascades); "
                "install opencv-python<5 or use --detector yunet.onnx")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"{path}: OpenCV could not load the cascade")
        self.scale_factor, self.min_neighbors, self.min_size, self.max_side = (
            scale_factor, min_neighbors, min_size, max_side)
        self.mapping = mapping

    def detect(self, image_bgr: np.ndarray) -> Detections:
        g = _gray(image_bgr)
        if min(g.shape[:2]) * min(1.0, self.max_side / max(*g.shape[:2], 1)) < self.min_size:
            return Detections(np.zeros((0, 4)), np.zeros(0))  # no face fits (and resize would make 0 rows)
        k = min(1.0, self.max_side / max(g.shape[:2]))
        if k < 1.0:
            g = cv2.resize(g, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        g = cv2.equalizeHist(g)
        found = self._cascade.detectMultiScale(g, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                               minSize=(self.min_size, self.min_size))
        if len(found) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0))
        b = np.asarray(found, dtype=np.float64)
        b[:, 2:] += b[:, :2]
        b = (b + 0.5) / k - 0.5  # back to full-resolution pixel centres
        b = b[np.argsort(-(b[:, 2] - b[:, 0]))]  # largest first (the cascade has no useful score)
        return Detections(self.mapping.apply(b), np.ones(len(b)))


# the five keypoints of YuNet and SCRFD, image-left first: eye, eye, nose tip, mouth corner, mouth corner
def _five_from_mean() -> np.ndarray:
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


class YuNetDetector:
    """``cv2.FaceDetectorYN`` with a user-supplied YuNet ONNX file (e.g. face_detection_yunet_2023mar.onnx)."""

    def __init__(self, model_path: str | os.PathLike, *, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, top_k: int = 50) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: YuNet model not found")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError("this OpenCV has no cv2.FaceDetectorYN (needs OpenCV >= 4.5.4)")
        self._det = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, top_k)
        self._size: tuple[int, int] | None = None

    def detect(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        if self._size != (w, h):
            self._det.setInputSize((w, h))
            self._size = (w, h)
        _, faces = self._det.detect(image_bgr)
        return parse_yunet(faces)


def parse_yunet(faces: np.ndarray | None) -> Detections:
    """YuNet rows (K, 15): x, y, w, h, five keypoints (x, y), score -> tight boxes, best first."""
    if faces is None or len(faces) == 0:
        return Detections(np.zeros((0, 4)), np.zeros(0))
    f = np.asarray(faces, dtype=np.float64)
    order = np.argsort(-f[:, 14])
    f = f[order]
    return Detections(box_from_five_points(f[:, 4:14].reshape(-1, 5, 2)), f[:, 14])


class ScrfdDetector:
    """An insightface SCRFD ONNX with keypoints (9 outputs: scores, boxes, keypoints for strides 8, 16, 32)."""

    def __init__(self, model_path: str | os.PathLike, *, input_size: int = 640, score_threshold: float = 0.5,
                 nms_threshold: float = 0.4) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: SCRFD model not found")
        import onnxruntime as ort

        self._sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        if len(self._sess.get_outputs()) != 9:
            raise ValueError(f"{path}: expected an SCRFD model with keypoints (9 outputs), got "
                             f"{len(self._sess.get_outputs())}; use a *_kps SCRFD model")
        self._input = self._sess.get_inputs()[0].name
        self.input_size, self.score_threshold, self.nms_threshold = input_size, score_threshold, nms_threshold

    def detect(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        k = self.input_size / max(h, w)
        resized = cv2.resize(image_bgr, (int(round(w * k)), int(round(h * k))))
        canvas = np.zeros((self.input_size, self.input_size, 3), np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        blob = cv2.dnn.blobFromImage(canvas, 1 / 128, (self.input_size, self.input_size), (127.5, 127.5, 127.5),
                                     swapRB=True)
        outs = self._sess.run(None, {self._input: blob})
        return decode_scrfd(outs, self.input_size, 1 / k, self.score_threshold, self.nms_threshold)


def decode_scrfd(outputs: list[np.ndarray], input_size: int, scale: float, score_threshold: float,
                 nms_threshold: float, strides: tuple[int, ...] = (8, 16, 32), num_anchors: int = 2) -> Detections:
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
    scores = np.concatenate(all_scores)
    if len(scores) == 0:
        return Detections(np.zeros((0, 4)), np.zeros(0))
    boxes, kps = np.concatenate(all_boxes) * scale, np.concatenate(all_kps) * scale
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, nms_threshold)
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep])]
    return Detections(box_from_five_points(kps[keep].reshape(-1, 5, 2)), scores[keep])


DETECTORS = ("blazeface", "haar")


def make_detector(spec: str = "blazeface") -> FaceDetector:
    """``"blazeface"`` (default: the shipped CNN, :mod:`fa3d.runtime.blazeface_detector`), ``"haar"``, or a path
    to a YuNet or SCRFD ONNX file (the file name must say which)."""
    if spec == "blazeface":
        from .blazeface_detector import BlazeFaceDetector

        return BlazeFaceDetector()
    if spec == "haar":
        return HaarDetector()
    name = Path(spec).name.lower()
    if "yunet" in name:
        return YuNetDetector(spec)
    if "scrfd" in name:
        return ScrfdDetector(spec)
    raise ValueError(f"unknown detector {spec!r}: use 'blazeface', 'haar', or a YuNet/SCRFD ONNX file whose "
                     "name contains 'yunet' or 'scrfd'")
