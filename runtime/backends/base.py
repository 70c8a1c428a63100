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


def expected_output_shapes(meta: ArtifactMetadata) -> dict[str, tuple[int, ...]]:
    """The shape of each output without the batch axis, as the runtime needs it."""
    return {"landmarks": (NUM_LANDMARKS, 3), "rotation": (3, 3), "dense": (meta.num_dense, 3), "confidence": (1,)}


def check_output_shapes(shapes: dict[str, list], meta: ArtifactMetadata, where: str) -> None:
    """Refuse, at load time, a model whose declared output shapes (batch axis first; symbolic or unknown
    dimensions are strings or None and pass) contradict what the runtime and the sidecar need."""
    for name, want in expected_output_shapes(meta).items():
        shape = shapes.get(name)
        if shape is None:
            continue
        dims = list(shape)
        ok = len(dims) == len(want) + 1 and all(not isinstance(d, int) or d == w for d, w in zip(dims[1:], want))
        if not ok:
            hint = (f" (the sidecar says num_dense={meta.num_dense})" if name == "dense" else "")
            raise BackendError(f"{where}: output {name!r} has shape {dims}, the runtime needs (B, "
                               f"{', '.join(map(str, want))}){hint}; the model and its sidecar do not match: "
                               "re-export both with fa-export")


def check_format(meta: ArtifactMetadata, expected: str, where: str) -> None:
    if meta.format != expected:
        raise MetadataError(f"{where}: the sidecar describes a {meta.format!r} artifact, expected {expected!r}; "
                            "the sidecar belongs to another file (re-run fa-export)")
