"""ONNX Runtime backend: an ``.onnx`` file and its ``.onnx.json`` sidecar, on CPU or a GPU execution provider.

``onnxruntime`` is imported when a session is first made (:mod:`fa3d.runtime.lazy`), never at package import.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..lazy import lazy_import
from ..metadata import read_sidecar
from .base import OUTPUT_NAMES, BackendBase, BackendError, check_format, check_output_shapes

#: device -> execution providers, best first
PROVIDERS: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
#: the largest batch sent in one call when the model's batch dimension is dynamic
DEFAULT_MAX_BATCH = 64

ort = lazy_import("onnxruntime")  # a base dependency, loaded on first use: keeps `import fa3d.runtime` light


def choose_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for ``device`` among ``available``; a clear error when the device's is missing."""
    if device == "auto":
        return [p for p in PROVIDERS["tensorrt"] if p in available] or ["CPUExecutionProvider"]
    if device not in PROVIDERS:
        raise ValueError(f"unknown device {device!r}; use one of {sorted(PROVIDERS) + ['auto']}")
    first = PROVIDERS[device][0]
    if first not in available:
        raise BackendError(f"ONNX Runtime has no {first} here (available: {available}); install "
                           "onnxruntime-gpu for CUDA/TensorRT, or use --device cpu")
    return [p for p in PROVIDERS[device] if p in available]


def cpu_session(path: str | os.PathLike, threads: int | None = 1):
    """A bare ONNX Runtime CPU session (quiet log) for tools that need every output of any ONNX model
    (parity checks, the INT8 gate, benchmarks). ``threads=None`` leaves the thread count to ONNX Runtime."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OrtBackend(BackendBase):
    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", num_threads: int | None = None,
                 device_id: int = 0, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.path = Path(path)
        self.metadata = read_sidecar(self.path)
        check_format(self.metadata, "onnx", str(self.path))
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        self.providers = choose_providers(device, ort.get_available_providers())
        provider_options = [{"device_id": device_id} if p != "CPUExecutionProvider" else {}
                            for p in self.providers]
        try:
            self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=self.providers,
                                                 provider_options=provider_options)
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendError(f"{self.path}: ONNX Runtime cannot load this model ({e}); re-export it "
                               "with fa-export") from None
        inputs = self._session.get_inputs()
        names = [i.name for i in inputs]
        if names != [self.metadata.input_name]:
            raise BackendError(f"{self.path}: model inputs {names} do not match the sidecar's "
                               f"{self.metadata.input_name!r}")
        shape = inputs[0].shape
        s = self.metadata.preprocess.input_size
        if len(shape) != 4 or list(shape[1:]) != [3, s, s]:
            raise BackendError(f"{self.path}: model input shape {shape} does not match the sidecar's "
                               f"(B, 3, {s}, {s})")
        out_names = {o.name for o in self._session.get_outputs()}
        missing = [o for o in OUTPUT_NAMES if o not in out_names]
        if missing:
            raise BackendError(f"{self.path}: the model lacks the outputs {missing}; re-export it with fa-export")
        check_output_shapes({o.name: o.shape for o in self._session.get_outputs()}, self.metadata, str(self.path))
        self.max_batch = int(shape[0]) if isinstance(shape[0], int) else int(max_batch)

    def _infer_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(list(OUTPUT_NAMES), {self.metadata.input_name: x})
        return dict(zip(OUTPUT_NAMES, values))

    def close(self) -> None:
        self._session = None
