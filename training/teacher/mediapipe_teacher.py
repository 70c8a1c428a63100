"""MediaPipe FaceMesh as a pseudo-labelling teacher (468 dense 3D points, 68 iBUG points, pose).

MediaPipe (``mediapipe==0.10.21``, the ``[teacher]`` extra) pins ``numpy<2`` and ships its own ``cv2``,
so it lives in an environment of its own: ``make teacher-env`` creates ``.venv-teacher``. It is imported
lazily (:mod:`fa3d.runtime.lazy`) when a :class:`MediaPipeTeacher` is made, never at package import.

Conventions of the labels this module returns (the package's):

* x, y: 0-based OpenCV pixels of the *input* image. MediaPipe reports coordinates normalised by the image
  size with pixel centres at ``(j + 0.5) / W``; we map them with ``x = x_norm * W - 0.5``.
* z: MediaPipe's normalised depth (same scale as x, smaller = nearer) becomes ``z = -z_norm * W_padded``
  pixels, larger = nearer the camera, origin arbitrary.
* Padding: the image is padded by ``pad`` pixels on every side before the network sees it (MediaPipe's
  detector finds more faces when a tight crop is padded); coordinates are mapped back to the unpadded
  image.
* Confidence: the score of MediaPipe's own face detector (BlazeFace short range) for the face, in [0, 1];
  FaceMesh (the legacy solution API) exposes no landmark presence score.
* The 68 iBUG points come from the fixed table in :mod:`fa3d.training.teacher.mapping`; the pose is the
  rotation of a similarity fit of the package's mean shape to those 68 points
  (:func:`pose_from_landmarks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

import cv2
import numpy as np

from fa3d.runtime import pose as pose_mod
from fa3d.runtime.lazy import available, lazy_import
from fa3d.runtime import schema
from fa3d.runtime.preprocess import landmark_box
from fa3d.runtime.boxes import box_iou

from .mapping import map_dense_to_68

mp = lazy_import("mediapipe", extra="teacher")

TEACHER_NAME = "mediapipe-facemesh"
NUM_DENSE = 468


class TeacherUnavailableError(RuntimeError):
    """MediaPipe is not importable in this environment."""


def teacher_available() -> bool:
    return available("mediapipe")


def _require_mediapipe() -> None:
    if not teacher_available():
        raise TeacherUnavailableError(
            "MediaPipe is not installed in this Python environment. The teacher needs mediapipe==0.10.21, "
            "which clashes with the runtime's numpy/OpenCV: run `make teacher-env` in the fa3d checkout and "
            "use `.venv-teacher/bin/fa-label ...`")


def teacher_version() -> str:
    return f"{TEACHER_NAME} mediapipe=={version('mediapipe')}"


@dataclass(frozen=True)
class TeacherOptions:
    pad: int = 40  # pixels of constant border added on every side before detection
    max_faces: int = 1
    min_detection_confidence: float = 0.5
    refine_landmarks: bool = False  # True adds 10 iris points (478); we keep the 468-point mesh

    def __post_init__(self) -> None:
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {self.max_faces}")
        if not 0.0 <= self.min_detection_confidence <= 1.0:
            raise ValueError("min_detection_confidence must lie in [0, 1]")


@dataclass(frozen=True)
class TeacherLabel:
    """One face labelled by the teacher, in the package's conventions (see the module docstring)."""

    dense: np.ndarray  # (468, 3) float32 image pixels, z larger = nearer
    landmarks: np.ndarray  # (68, 3) float32
    ypr: np.ndarray  # (3,) float32 yaw, pitch, roll degrees
    confidence: float
    box: np.ndarray  # (4,) float32 tight box of the 68 points


def pose_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll (degrees) of 68 image landmarks: similarity fit of the mean shape, then Euler angles."""
    rot, _, _ = pose_mod.fit_similarity(schema.mean_shape(), pose_mod.image_to_view(landmarks))
    return pose_mod.matrix_to_euler(rot)


class MediaPipeTeacher:
    """FaceMesh in static-image mode plus the face detector for a confidence score.

    Use as a context manager (or call :meth:`close`). Not thread-safe: one instance per thread.
    """

    def __init__(self, options: TeacherOptions = TeacherOptions()) -> None:
        _require_mediapipe()
        self.options = options
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=options.max_faces,
            refine_landmarks=options.refine_landmarks,
            min_detection_confidence=options.min_detection_confidence)
        self._det = mp.solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.05)
        self.version = teacher_version()

    def close(self) -> None:
        self._mesh.close()
        self._det.close()

    def __enter__(self) -> "MediaPipeTeacher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dense_points(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """Raw 468 points (468, 3) per face in image pixels (package convention), without the mapping."""
        return [d for d, _ in self._run(image_bgr, with_scores=False)]

    def label(self, image_bgr: np.ndarray) -> list[TeacherLabel]:
        """Label every face MediaPipe finds in a BGR uint8 image; an empty list when none."""
        out = []
        for dense, score in self._run(image_bgr, with_scores=True):
            lm = map_dense_to_68(dense)
            ypr = pose_from_landmarks(lm)
            box = landmark_box(lm)[0]
            out.append(TeacherLabel(dense=dense.astype(np.float32), landmarks=lm.astype(np.float32),
                                    ypr=ypr.astype(np.float32), confidence=float(score),
                                    box=box.astype(np.float32)))
        return out

    def _run(self, image_bgr: np.ndarray, with_scores: bool) -> list[tuple[np.ndarray, float]]:
        if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3:
            raise ValueError("expected a BGR uint8 image (H, W, 3)")
        p = self.options.pad
        padded = cv2.copyMakeBorder(image_bgr, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        rgb = np.ascontiguousarray(cv2.cvtColor(padded, cv2.COLOR_BGR2RGB))
        res = self._mesh.process(rgb)
        if not res.multi_face_landmarks:
            return []
        h, w = padded.shape[:2]
        faces = []
        for fl in res.multi_face_landmarks:
            a = np.array([(q.x, q.y, q.z) for q in fl.landmark[:NUM_DENSE]], dtype=np.float64)
            d = np.empty_like(a)
            d[:, 0] = a[:, 0] * w - 0.5 - p
            d[:, 1] = a[:, 1] * h - 0.5 - p
            d[:, 2] = -a[:, 2] * w
            faces.append(d)
        if not with_scores:
            return [(f, float("nan")) for f in faces]
        dets = self._det.process(rgb).detections or []
        det_boxes = []
        for det in dets:
            bb = det.location_data.relative_bounding_box
            det_boxes.append((np.array([bb.xmin * w - p, bb.ymin * h - p, (bb.xmin + bb.width) * w - p,
                                        (bb.ymin + bb.height) * h - p]), float(det.score[0])))
        out = []
        for f in faces:
            fbox = landmark_box(f)[0]
            best = 0.0
            for b, s in det_boxes:
                if box_iou(fbox, b) > 0.3:
                    best = max(best, s)
            out.append((f, best))
        return out
