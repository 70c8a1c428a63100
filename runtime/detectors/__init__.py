"""Face detectors behind one interface (:class:`FaceDetector`); :func:`make_detector` picks one by name.

``blazeface`` (the default: :mod:`.blazeface_detector`, decoding in :mod:`.blazeface`), ``haar``
(:mod:`.haar`), and user-supplied YuNet (:mod:`.yunet`) and SCRFD (:mod:`.scrfd`) ONNX files; the names in
one place, :mod:`.registry`. Every detector returns tight 68-landmark boxes. Box geometry (IoU, NMS, box
mappings) is :mod:`fa3d.runtime.boxes`.
"""

from __future__ import annotations

from .base import DetectorBase, DetectorError, Detections, FaceDetector, as_detector
from .registry import DETECTOR_HELP, is_builtin, make_detector

__all__ = ["DETECTOR_HELP", "DetectorBase", "DetectorError", "Detections", "FaceDetector", "as_detector",
           "is_builtin", "make_detector"]
