"""Where a detector network runs: any object with ``run(batch) -> outputs`` (:class:`DetectorSession`).

:class:`OrtSession` runs an ONNX file on ONNX Runtime's CPU provider (:func:`fa3d.runtime.backends.onnxrt.cpu_session`,
the one place ONNX Runtime sessions are made). Whatever goes wrong loading or running it (ONNX Runtime raises
its own exception types, which are not RuntimeError) becomes a one-line :class:`DetectorError`. A detector
sends at most :attr:`DetectorSession.max_batch` inputs per call (None: any number; the detector then uses its
own fixed batch size).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .base import DetectorError


def one_line(e: BaseException) -> str:
    """An exception's message on one line, shortened (OpenCV and ONNX Runtime messages span lines)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 240 else text[:237] + "..."


class DetectorSession(Protocol):
    max_batch: int | None

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """The network's outputs for a batch of inputs (B, ...), in the order the detector asked for."""
        ...


class OrtSession:
    """An ONNX detector network on ONNX Runtime (CPU), checked when it is loaded.

    ``outputs``: the output names to return, in this order (None: all, in the model's order); ``input_shape``:
    the input's (C, H, W) the detector feeds (dimensions the model leaves symbolic are not checked)."""

    def __init__(self, path: str | os.PathLike, *, what: str, outputs: tuple[str, ...] | None = None,
                 input_shape: tuple[int, int, int] | None = None, threads: int | None = 1) -> None:
        from ..backends.onnxrt import cpu_session

        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"{self.path}: {what} model file not found")
        try:
            self._sess = cpu_session(self.path, threads=threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            raise DetectorError(f"{self.path}: ONNX Runtime cannot load this {what} model ({one_line(e)})") from None
        inputs = self._sess.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DetectorError(f"{self.path}: a {what} model has one 4-D image input; this one has "
                                f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name, self.input_dims = inputs[0].name, list(inputs[0].shape)
        if input_shape is not None:
            fixed = [(d, w) for d, w in zip(self.input_dims[1:], input_shape) if isinstance(d, int)]
            if any(d != w for d, w in fixed):
                raise DetectorError(f"{self.path}: input shape {self.input_dims}, a {what} model takes "
                                    f"(B, {', '.join(map(str, input_shape))})")
        names = [o.name for o in self._sess.get_outputs()]
        missing = [n for n in outputs or () if n not in names]
        if missing:
            raise DetectorError(f"{self.path}: not a {what} model: it lacks the outputs {missing} (has {names})")
        self.output_names = list(outputs) if outputs is not None else names
        b = self.input_dims[0]
        self.max_batch = b if isinstance(b, int) and b > 0 else None
        self.what = what

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            return self._sess.run(self.output_names, {self.input_name: batch})
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise DetectorError(f"{self.path}: the {self.what} model failed to run ({one_line(e)})") from None

    def close(self) -> None:
        self._sess = None
