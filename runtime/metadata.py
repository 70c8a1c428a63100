"""Artifact metadata: the versioned JSON that makes every model artifact describe itself.

A checkpoint carries it inside; an ONNX file or TensorRT engine has it in a sidecar named
``<artifact>.json`` (``model.onnx.json``, ``model.plan.json``). The runtime reads nothing about a model
from anywhere else: input size, normalisation, channel order, output layout, landmark schema and pose
convention all come from here.

:func:`read_metadata` is the one sidecar reader. A sidecar is data from outside: it is read within bounds
(:mod:`fa3d.runtime.jsonfile`: at most 1 MiB, nested at most 32 deep, finite numbers only) and every number
is checked for its type and range (integers where integers belong, ``num_dense`` <= :data:`MAX_DENSE`, the
preprocessing's ranges in :class:`~fa3d.runtime.preprocess.PreprocessConfig`); anything else is one
:class:`MetadataError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .jsonfile import JsonFileError, read_json_file
from .preprocess import PreprocessConfig, strict_int
from .schema import NUM_LANDMARKS, SCHEMA_NAME

SCHEMA_ID = "fa3d.artifact"
SCHEMA_VERSION = 1
POSE_CONVENTION = "pose_para_ypr_deg"  # see fa3d.runtime.pose
FORMATS = ("checkpoint", "onnx", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "input"
#: the most dense points an artifact may declare (the output is B x N x 3 floats: memory stays bounded)
MAX_DENSE = 100_000
#: output name -> layout; "B" is the batch, "N" the dense point count. Coordinates are crop pixels.
OUTPUT_LAYOUTS: dict[str, str] = {
    "landmarks": "B,68,3 crop pixels (x, y down, z near)",
    "rotation": "B,3,3 rotation matrix, pose_para_ypr_deg convention, crop frame",
    "dense": "B,N,3 crop pixels (x, y down, z near)",
    "confidence": "B,1 face probability in [0, 1]",
}
#: the model outputs, in order (ONNX output names, engine tensor names, the keys of every backend's result)
OUTPUT_NAMES: tuple[str, ...] = tuple(OUTPUT_LAYOUTS)


class MetadataError(ValueError):
    """An artifact's metadata is missing, malformed or incompatible."""


@dataclass(frozen=True)
class ArtifactMetadata:
    format: str
    preprocess: PreprocessConfig
    num_dense: int
    precision: str = "fp32"
    input_name: str = INPUT_NAME
    outputs: tuple[str, ...] = tuple(OUTPUT_LAYOUTS)
    landmark_schema: str = SCHEMA_NAME
    num_landmarks: int = NUM_LANDMARKS
    pose_convention: str = POSE_CONVENTION
    model: dict[str, Any] = field(default_factory=dict)  # preset, fuse_pose, parameters, training data
    producer: dict[str, str] = field(default_factory=dict)  # package versions that made it
    source_sha256: str | None = None  # hash of the artifact this one was made from
    engine: dict[str, Any] | None = None  # TensorRT: version, gpu, compute capability, profile
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.format not in FORMATS:
            problems.append(f"format {self.format!r} is not one of {FORMATS}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not one of {PRECISIONS}")
        if self.landmark_schema != SCHEMA_NAME or self.num_landmarks != NUM_LANDMARKS:
            problems.append(f"landmark schema {self.landmark_schema}/{self.num_landmarks} is not "
                            f"{SCHEMA_NAME}/{NUM_LANDMARKS}")
        if self.pose_convention != POSE_CONVENTION:
            problems.append(f"pose convention {self.pose_convention!r} is not {POSE_CONVENTION!r}")
        n = self.num_dense
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_DENSE:
            problems.append(f"num_dense must be an integer in [0, {MAX_DENSE}], got {self.num_dense!r}")
        missing = [o for o in OUTPUT_LAYOUTS if o not in self.outputs]
        if missing:
            problems.append(f"outputs lack {missing}")
        if self.schema_version != SCHEMA_VERSION:
            problems.append(f"schema version {self.schema_version} is not {SCHEMA_VERSION}")
        if problems:
            raise MetadataError("invalid artifact metadata: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_ID,
            "schema_version": self.schema_version,
            "format": self.format,
            "precision": self.precision,
            "input": {"name": self.input_name, "layout": "B,3,S,S float32",
                      "preprocess": self.preprocess.to_dict()},
            "outputs": [{"name": name, "layout": OUTPUT_LAYOUTS[name]} for name in self.outputs],
            "landmark_schema": self.landmark_schema,
            "num_landmarks": self.num_landmarks,
            "num_dense": self.num_dense,
            "pose_convention": self.pose_convention,
            "model": dict(self.model),
            "producer": dict(self.producer),
            "source_sha256": self.source_sha256,
            "engine": None if self.engine is None else dict(self.engine),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "metadata") -> "ArtifactMetadata":
        if not isinstance(d, dict) or d.get("schema") != SCHEMA_ID:
            raise MetadataError(f"{where}: not fa3d artifact metadata (no \"schema\": \"{SCHEMA_ID}\")")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MetadataError(
                f"{where}: metadata schema version {version} is not the version {SCHEMA_VERSION} this fa3d "
                "reads; re-export the artifact with this fa3d version (fa-export)")
        try:
            inp = d["input"]
            return cls(
                format=d["format"], precision=d["precision"], input_name=inp["name"],
                preprocess=PreprocessConfig.from_dict(inp["preprocess"]),
                outputs=tuple(o["name"] for o in d["outputs"]), landmark_schema=d["landmark_schema"],
                num_landmarks=strict_int(d["num_landmarks"], "num_landmarks"),
                num_dense=strict_int(d["num_dense"], "num_dense", 0, MAX_DENSE),
                pose_convention=d["pose_convention"], model=dict(d.get("model") or {}),
                producer=dict(d.get("producer") or {}), source_sha256=d.get("source_sha256"),
                engine=d.get("engine"), schema_version=version,
            )
        except KeyError as e:
            raise MetadataError(f"{where}: metadata lacks the key {e.args[0]!r}") from None
        except (TypeError, ValueError, ArithmeticError) as e:
            raise MetadataError(f"{where}: {e}") from None

    def with_(self, **changes: Any) -> "ArtifactMetadata":
        return replace(self, **changes)

    def check_compatible(self, other: "ArtifactMetadata", where: str = "artifact") -> None:
        """Raise if ``other`` does not describe the same model interface (inputs, outputs, conventions)."""
        mine, theirs = self.to_dict(), other.to_dict()
        for key in ("input", "outputs", "landmark_schema", "num_dense", "pose_convention"):
            if mine[key] != theirs[key]:
                raise MetadataError(f"{where}: {key} differs: {theirs[key]!r} != expected {mine[key]!r}")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact) + ".json")


def write_metadata(path: str | os.PathLike, meta: ArtifactMetadata) -> Path:
    """Write metadata JSON atomically to ``path``."""
    atomic_write_text(path, json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    path = Path(path)
    if not path.is_file():
        raise MetadataError(f"{path}: metadata file not found; every fa3d artifact needs its JSON sidecar "
                            "(re-run fa-export to make one)")
    try:
        d = read_json_file(path)  # bounded: size, nesting depth, finite numbers only
    except (OSError, JsonFileError) as e:
        raise MetadataError(f"unreadable metadata JSON: {e}; re-run fa-export to rewrite it") from None
    return ArtifactMetadata.from_dict(d, where=str(path))


def read_sidecar(artifact: str | os.PathLike) -> ArtifactMetadata:
    return read_metadata(sidecar_path(artifact))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
