"""Inference backends behind one interface; the artifact's file type picks the backend.

``.onnx`` -> :class:`~fa3d.runtime.backends.onnxrt.OrtBackend` (ONNX Runtime: CPU, or CUDA / TensorRT
execution providers when installed); ``.plan`` / ``.engine`` -> :class:`~fa3d.runtime.backends.trt.TrtBackend`
(TensorRT + pycuda). Neither onnxruntime nor tensorrt is imported until a backend is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import OUTPUT_NAMES, Backend, BackendBase, BackendError
from .onnxrt import OrtBackend
from .trt import TrtBackend

__all__ = ["OUTPUT_NAMES", "Backend", "BackendBase", "BackendError", "open_backend", "backend_kind"]

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".plan", ".engine")


def backend_kind(path: str | os.PathLike) -> str:
    """``"onnxruntime"`` or ``"tensorrt"`` for an artifact path, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnxruntime"
    if suffix in ENGINE_SUFFIXES:
        return "tensorrt"
    raise BackendError(f"{path}: unknown model type {suffix!r}; give an ONNX file (.onnx) or a TensorRT "
                       "engine (.plan / .engine) made by fa-export")


def open_backend(path: str | os.PathLike, *, device: str = "cpu", num_threads: int | None = None,
                 device_id: int = 0) -> Backend:
    """Open a model artifact with the backend its type calls for.

    ``device`` applies to ONNX files: ``"cpu"`` (default), ``"cuda"``, ``"tensorrt"`` (ONNX Runtime
    execution providers; an error when not installed) or ``"auto"`` (the best installed one).
    ``device_id`` is the GPU for engines and GPU execution providers.
    """
    path = Path(path)
    kind = backend_kind(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    if kind == "onnxruntime":
        return OrtBackend(path, device=device, num_threads=num_threads, device_id=device_id)
    return TrtBackend(path, device_id=device_id)
