"""The one interface every inference backend implements, and the checks they share.

A backend wraps one model artifact (an ONNX file, a TensorRT engine) and its metadata sidecar. It takes a
batch of preprocessed faces, ``(B, 3, S, S)`` float32 as made by :func:`fa3d.runtime.preprocess.prepare`,
and returns the four named outputs in crop coordinates (see :data:`fa3d.runtime.metadata.OUTPUT_LAYOUTS`):

``landmarks`` (B, 68, 3), ``rotation`` (B, 3, 3), ``dense`` (B, N, 3), ``confidence`` (B, 1).

Batches larger than :attr:`Backend.max_batch` are split into chunks by :meth:`BackendBase.infer`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..metadata import OUTPUT_NAMES, ArtifactMetadata, MetadataError
from ..schema import NUM_LANDMARKS


class BackendError(RuntimeError):
    """A model artifact cannot be loaded or run by a backend (the message says how to fix it)."""


@runtime_checkable
class Backend(Protocol):
    metadata: ArtifactMetadata
    max_batch: int

    def infer(self, inputs: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class BackendBase:
    """Shared behaviour: input validation, chunking to ``max_batch``, output checks, context manager."""

    name = "base"
    metadata: ArtifactMetadata
    max_batch: int

    def infer(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        x = self._check_inputs(inputs)
        if len(x) == 0:
            return self._empty_outputs()
        if len(x) <= self.max_batch:
            return self._check_outputs(self._infer_batch(x), len(x))
        parts = [self._check_outputs(self._infer_batch(x[i:i + self.max_batch]), len(x[i:i + self.max_batch]))
                 for i in range(0, len(x), self.max_batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in OUTPUT_NAMES}

    def _infer_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def input_size(self) -> int:
        return self.metadata.preprocess.input_size

    def _check_inputs(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs)
        s = self.input_size
        if x.ndim != 4 or x.shape[1:] != (3, s, s):
            raise ValueError(f"{self.name}: expected inputs (B, 3, {s}, {s}), got shape {x.shape}")
        return np.ascontiguousarray(x, dtype=np.float32)

    def _empty_outputs(self) -> dict[str, np.ndarray]:
        n = self.metadata.num_dense
        return {"landmarks": np.zeros((0, NUM_LANDMARKS, 3), np.float32),
                "rotation": np.zeros((0, 3, 3), np.float32),
                "dense": np.zeros((0, n, 3), np.float32),
                "confidence": np.zeros((0, 1), np.float32)}

    def _check_outputs(self, out: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        want = {"landmarks": (batch, NUM_LANDMARKS, 3), "rotation": (batch, 3, 3),
                "dense": (batch, self.metadata.num_dense, 3), "confidence": (batch, 1)}
        missing = [k for k in OUTPUT_NAMES if k not in out]
        if missing:
            raise BackendError(f"{self.name}: the model did not return the outputs {missing}; "
                               "re-export it with fa-export")
        result = {}
        for k, shape in want.items():
            a = np.asarray(out[k], dtype=np.float32)
            if a.shape != shape:
                raise BackendError(f"{self.name}: output {k!r} has shape {a.shape}, expected {shape} "
                                   "from the metadata sidecar; the artifact and its sidecar do not match")
            result[k] = a
        return result


def check_format(meta: ArtifactMetadata, expected: str, where: str) -> None:
    if meta.format != expected:
        raise MetadataError(f"{where}: the sidecar describes a {meta.format!r} artifact, expected {expected!r}; "
                            "the sidecar belongs to another file (re-run fa-export)")
