"""The face detector's network as a file fa-export writes (ONNX or TensorRT engine) and where fa-run runs it.

fa-export writes the shipped BlazeFace network beside the model (``blazeface_short_range.onnx``) with a small
sidecar (``.json``: what the network takes and returns, its precision, the hash of its source, and for an
engine the TensorRT version, GPU and profile) and, where TensorRT is, its FP16 engine
(``blazeface_short_range.plan``). A detector *session* runs the network on a batch of windows:
:class:`TrtDetectorSession` (the engine, through the runtime's :class:`~fa3d.runtime.backends.trt.TrtEngine`)
or :class:`OrtDetectorSession` (the ONNX on ONNX Runtime, CPU); both have ``max_batch`` and
``run(batch) -> [regressors, classificators]``, the detector session interface of the BlazeFace detector.

:func:`detector_session_for` picks one for a model: beside a TensorRT engine (or named), the detector's engine;
else ONNX Runtime on the CPU; its ``description`` says which (fa-run's start-up line, fa-bench's stage table).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .detectors.blazeface_detector import BlazeFaceDetector
from .detectors.session import OrtSession
from .jsonfile import JsonFileError, read_json_file

DETECTOR_NAME = "blazeface_short_range"
DETECTOR_ONNX = DETECTOR_NAME + ".onnx"
DETECTOR_ENGINE = DETECTOR_NAME + ".plan"
SCHEMA_ID = "fa3d.detector"
SCHEMA_VERSION = 1
#: BlazeFace's outputs, in the order its decoder reads them
OUTPUTS = ("regressors", "classificators")


class DetectorArtifactError(ValueError):
    """A detector network file or its sidecar is missing or does not describe what the detector needs."""


@dataclass(frozen=True)
class DetectorSidecar:
    """What a detector network file is: format, precision, input, outputs, source hash, engine."""

    format: str  # "onnx" or "tensorrt"
    name: str = DETECTOR_NAME
    precision: str = "fp32"
    input_name: str = "input"
    input_chw: tuple[int, int, int] = (3, 128, 128)
    outputs: tuple[str, ...] = OUTPUTS
    normalisation: str = "RGB, x / 127.5 - 1"
    source_sha256: str | None = None
    engine: dict[str, Any] | None = None
    schema_version: int = SCHEMA_VERSION
    producer: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in ("onnx", "tensorrt") or self.precision not in ("fp32", "fp16"):
            raise DetectorArtifactError(f"detector sidecar: format {self.format!r} / precision {self.precision!r}")
        if self.schema_version != SCHEMA_VERSION or tuple(self.outputs) != OUTPUTS:
            raise DetectorArtifactError(f"detector sidecar: schema {self.schema_version}, outputs {self.outputs}: "
                                        f"expected schema {SCHEMA_VERSION} and outputs {OUTPUTS}")

    def with_(self, **changes: Any) -> "DetectorSidecar":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_ID, **asdict(self), "input_chw": list(self.input_chw), "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> "DetectorSidecar":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA_ID:
            raise DetectorArtifactError(f"{where}: not a fa3d detector sidecar (schema {SCHEMA_ID!r})")
        known = set(cls.__dataclass_fields__)
        try:
            kw = {k: v for k, v in d.items() if k in known}
            kw["input_chw"] = tuple(int(v) for v in kw.get("input_chw", (3, 128, 128)))
            kw["outputs"] = tuple(kw.get("outputs", OUTPUTS))
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise DetectorArtifactError(f"{where}: {e}") from None


def sidecar_of(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".json")


def write_detector_sidecar(path: str | os.PathLike, sidecar: DetectorSidecar) -> Path:
    """``path``'s sidecar, written atomically."""
    out = sidecar_of(path)
    atomic_write_text(out, json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    return out


def read_detector_sidecar(path: str | os.PathLike) -> DetectorSidecar:
    side = sidecar_of(path)
    if not side.is_file():
        raise DetectorArtifactError(f"{side}: the detector network's sidecar is missing; re-run fa-export")
    try:
        return DetectorSidecar.from_dict(read_json_file(side), str(side))
    except (OSError, JsonFileError) as e:
        raise DetectorArtifactError(f"{side}: unreadable ({e}); re-run fa-export") from None


class OrtDetectorSession(OrtSession):
    """The detector's ONNX on ONNX Runtime's CPU provider, checked when it is loaded
    (:class:`fa3d.runtime.detectors.session.OrtSession`)."""

    backend = "onnxruntime cpu"

    def __init__(self, path: str | os.PathLike, threads: int | None = 1) -> None:
        super().__init__(path, what="BlazeFace", outputs=OUTPUTS, input_shape=(3, 128, 128), threads=threads)


class TrtDetectorSession:
    """The detector's TensorRT engine (and its sidecar) through the runtime's :class:`TrtEngine` (pycuda).
    Batches larger than the engine's profile are split, smaller ones padded when the profile is static."""

    backend = "tensorrt"

    def __init__(self, path: str | os.PathLike, device_id: int = 0) -> None:
        from .backends.trt import TrtEngine

        self.path = Path(path)
        self.sidecar = read_detector_sidecar(self.path)
        if self.sidecar.format != "tensorrt":
            raise DetectorArtifactError(f"{self.path}: its sidecar says format {self.sidecar.format!r}, not tensorrt")
        self._engine = TrtEngine(self.path, engine_block=self.sidecar.engine, input_name=self.sidecar.input_name,
                                 input_chw=self.sidecar.input_chw, required_outputs=OUTPUTS, device_id=device_id)
        self.max_batch = self._engine.max_batch

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        parts = [self._engine.run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
        return [np.concatenate([p[k] for p in parts]) for k in OUTPUTS]

    def close(self) -> None:
        self._engine.close()


@dataclass(frozen=True)
class DetectorChoice:
    """Where the detector's network runs for one model: a session (None: the detector's own ONNX Runtime CPU
    session) and the words that say so."""

    session: Any
    description: str
    backend: str  # where the network runs, in two words (fa-bench's stage table)


def find_detector_engine(model_engine: str | os.PathLike) -> Path | None:
    """The detector engine fa-export builds beside a model engine, if it is there."""
    p = Path(model_engine).parent / DETECTOR_ENGINE
    return p if p.is_file() else None


def detector_session_for(model: str | os.PathLike, detector: str, detector_engine: str | os.PathLike | None = None,
                         device_id: int = 0) -> DetectorChoice:
    """The BlazeFace network's session for ``model``: ``detector_engine`` when given, else the engine beside a
    TensorRT ``model``, else ONNX Runtime on the CPU. Other detectors keep their own ONNX Runtime sessions."""
    if detector != "blazeface":
        if detector_engine is not None:
            raise DetectorArtifactError(f"--detector-engine is the BlazeFace network's engine; --detector is {detector}")
        if detector == "haar":
            return DetectorChoice(None, "haar (OpenCV)", "opencv")
        return DetectorChoice(None, f"{detector} (onnxruntime cpu)", "onnxruntime cpu")
    engine = Path(detector_engine) if detector_engine is not None else (
        find_detector_engine(model) if str(model).lower().endswith((".plan", ".engine")) else None)
    if engine is None:
        return DetectorChoice(None, "blazeface (onnxruntime cpu)", "onnxruntime cpu")
    if not engine.is_file():
        raise DetectorArtifactError(f"{engine}: detector engine not found")
    return DetectorChoice(TrtDetectorSession(engine, device_id), f"blazeface (tensorrt {engine})", "tensorrt")


@dataclass(frozen=True)
class PipelineDetector:
    """The detector object for FaceAligner (None: its own, from ``--detector``) and where it runs, in words."""

    detector: object
    description: str
    backend: str


def pipeline_detector(model, detector: str, detector_engine, stack: contextlib.ExitStack) -> PipelineDetector:
    """BlazeFace on its TensorRT engine when there is one for ``model`` (beside a .plan, or named), else the
    detector ``--detector`` names on the CPU; the session is closed when ``stack`` closes (fa-run, fa-bench)."""
    choice = detector_session_for(model, detector, detector_engine)
    if choice.session is None:
        return PipelineDetector(None, choice.description, choice.backend)
    stack.callback(choice.session.close)
    return PipelineDetector(BlazeFaceDetector(session=choice.session), choice.description, choice.backend)
