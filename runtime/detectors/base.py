"""The one interface every face detector implements, and what all of them share.

Every detector returns TIGHT 68-landmark boxes (the preprocessing, :mod:`fa3d.runtime.preprocess`, expects
the tight box of the 68 landmarks), so each maps its own box to that. What the tracker
(:mod:`fa3d.runtime.track`) and :class:`~fa3d.runtime.aligner.FaceAligner` use, declared by
:class:`FaceDetector`:

* :meth:`~FaceDetector.detect`: every face of an image, in one call (single images, image folders);
* :meth:`~FaceDetector.scan`: what the tracker calls to find new faces in a video. A detector whose work
  grows with the frame (BlazeFace's pyramid) declares ``sweeps = True``: each call looks at a bounded
  part of the frame (a step of a sweep spread over frames), and the tracker calls it on every frame;
  otherwise a scan is a :meth:`detect` and the tracker calls it every ``det_every_n`` frames or when a face
  is lost. ``search=True``: no face is tracked, or one was just lost (a larger step, coarse scales first);
  ``spread``: the number of calls a sweep is spread over (the tracker's ``det_every_n``);
* :meth:`~FaceDetector.check_regions`: a second look at the tracked faces' places (``region_check = True``);
  a detector that cannot tell whether a known face is still there (Haar: frontal faces only) declares
  ``region_check = False`` and the tracker relies on the model's confidence.

:class:`DetectorBase` gives the defaults (scan = detect, no region check); :func:`as_detector` adapts any
object with a ``detect`` method. Load-time failures (a missing or corrupt model file, a model with the
wrong outputs) raise :class:`DetectorError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class DetectorError(RuntimeError):
    """A detector cannot be loaded: its model file is missing, unreadable or not the model it should be."""


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (K, 4) tight landmark boxes x1, y1, x2, y2 (0-based pixels), best first
    scores: np.ndarray  # (K,)
    keypoints: np.ndarray | None = None  # (K, P, 2) the detector's own keypoints, when it has them

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0))


@runtime_checkable
class FaceDetector(Protocol):
    #: scan() looks at a bounded part of the frame per call (call it every frame); False: scan() = detect()
    sweeps: bool
    #: check_regions() can confirm or refute a known face; False: the tracker never calls it
    region_check: bool

    def detect(self, image_bgr: np.ndarray) -> Detections: ...

    def scan(self, image_bgr: np.ndarray, *, search: bool = False, spread: int = 1) -> Detections:
        """New faces for the tracker: one step of a sweep spread over ``spread`` calls (``sweeps``), or detect()."""
        ...

    def check_regions(self, image_bgr: np.ndarray, tight_boxes: np.ndarray) -> Detections:
        """Per tight box (K, 4), the best face around it: its tight box and score, a NaN box and score 0 where
        there is none (rows in the order of ``tight_boxes``)."""
        ...


class DetectorBase:
    """Defaults for detectors that look at the whole frame in one call and have no region check."""

    sweeps = False
    region_check = False

    def detect(self, image_bgr: np.ndarray) -> Detections:  # pragma: no cover - abstract
        raise NotImplementedError

    def scan(self, image_bgr: np.ndarray, *, search: bool = False, spread: int = 1) -> Detections:  # noqa: ARG002
        return self.detect(image_bgr)

    def check_regions(self, image_bgr: np.ndarray, tight_boxes: np.ndarray) -> Detections:
        raise NotImplementedError(f"{type(self).__name__} has no region check (region_check is False)")


class _DetectOnly(DetectorBase):
    """Any object with ``detect(image) -> Detections``, as a :class:`FaceDetector`."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def detect(self, image_bgr: np.ndarray) -> Detections:
        return self.inner.detect(image_bgr)


def as_detector(obj) -> FaceDetector:
    """``obj`` itself when it implements :class:`FaceDetector`; an object with only ``detect`` wrapped in the
    defaults (scan = detect, no region check); a TypeError otherwise."""
    if isinstance(obj, FaceDetector):
        return obj
    if callable(getattr(obj, "detect", None)):
        return _DetectOnly(obj)
    raise TypeError(f"a face detector needs a detect(image) method; got {type(obj).__name__}")
