"""fa3d.runtime: numpy + OpenCV inference runtime (ONNX Runtime or TensorRT) for pose-fused 3D face alignment.

The public API is imported lazily, so ``import fa3d.runtime`` stays cheap and never imports
onnxruntime, tensorrt, pycuda or torch:

``FaceAligner``, ``FaceAlignerOptions`` (:mod:`.aligner`), ``RunningMode`` (:mod:`.running_mode`),
``FaceResult`` (:mod:`.results`), ``CameraIntrinsics`` (:mod:`.camera`).
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FaceAligner": ".aligner",
    "FaceAlignerOptions": ".aligner",
    "RunningMode": ".running_mode",
    "FaceResult": ".results",
    "CameraIntrinsics": ".camera",
    "OneEuroOptions": ".smoothing",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
