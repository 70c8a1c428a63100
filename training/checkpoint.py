"""Checkpoints: self-describing, atomic, and loadable with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and primitives only:

``format`` ("fa3d.checkpoint"), ``format_version``, ``state_dict``, ``model_config`` (dict),
``train_config`` (dict), ``metadata`` (:class:`fa3d.runtime.metadata.ArtifactMetadata` as a dict),
``landmark_schema`` (name, count, mirror permutation), ``mean_shape`` (68, 3 tensor), ``metrics`` (dict),
and, in resumable checkpoints (``last.pt``), ``resume``: optimizer, scheduler and scaler states, the RNG
states of python, numpy and torch, epoch, step, the sampler position and the logged history.
"""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.metadata import ArtifactMetadata, MetadataError
from fa3d.runtime.preprocess import PreprocessConfig
from fa3d.runtime.schema import MIRROR, NUM_LANDMARKS, SCHEMA_NAME, mean_shape

from .model import ModelConfig, MobileConfig, config_from_dict, count_parameters, network_for

FORMAT = "fa3d.checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "state_dict", "model_config", "metadata", "landmark_schema",
                 "mean_shape", "metrics")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: "torch.nn.Module"  # in eval mode
    metadata: ArtifactMetadata
    model_config: ModelConfig | MobileConfig
    metrics: dict
    train_config: dict = field(default_factory=dict)
    resume: dict | None = None


def _producer() -> dict[str, str]:
    try:
        fa3d_version = version("fa3d")
    except PackageNotFoundError:
        fa3d_version = "unknown"
    return {"fa3d": fa3d_version, "torch": str(torch.__version__), "python": platform.python_version()}


def model_metadata(model: torch.nn.Module, preprocess: PreprocessConfig | None = None,
                   extra: dict | None = None) -> ArtifactMetadata:
    """The artifact metadata of a model (format ``checkpoint``)."""
    cfg = model.config
    pre = preprocess or PreprocessConfig(input_size=cfg.input_size)
    if pre.input_size != cfg.input_size:
        raise ValueError(f"preprocessing input size {pre.input_size} != model input size {cfg.input_size}")
    info = {"preset": cfg.preset, "fuse_pose": cfg.fuse_pose, "parameters": count_parameters(model)}
    info.update(extra or {})
    return ArtifactMetadata(format="checkpoint", preprocess=pre, num_dense=cfg.num_dense, model=info,
                            producer=_producer())


def rng_state() -> dict:
    """Python, numpy (legacy global) and torch RNG states as primitives and tensors."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                       int(np_state[3]), float(np_state[4])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, *, metrics: dict | None = None,
                    train_config: dict | None = None, preprocess: PreprocessConfig | None = None,
                    resume: dict | None = None, metadata_extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (a crash leaves the previous file or none, never half a file)."""
    net = model.module if hasattr(model, "module") else model
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "model_config": net.config.to_dict(),
        "train_config": dict(train_config or {}),
        "metadata": model_metadata(net, preprocess, metadata_extra).to_dict(),
        "landmark_schema": {"name": SCHEMA_NAME, "num_landmarks": NUM_LANDMARKS, "mirror": MIRROR.tolist()},
        "mean_shape": torch.from_numpy(mean_shape().copy()),
        "metrics": dict(metrics or {}),
    }
    if resume is not None:
        ckpt["resume"] = resume
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return path


def _load_failure(e: Exception) -> str:
    """torch.load's reason in one line (its weights-only refusal spans a page of advice)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not any("Weights only load failed" in ln for ln in lines):
        return f"{type(e).__name__}: {lines[0] if lines else ''}"
    marks = [i for i, ln in enumerate(lines) if "WeightsUnpickler" in ln]
    why = lines[marks[0] + 1] if marks and marks[0] + 1 < len(lines) else "objects beyond tensors and plain data"
    return (f"refused by the weights-only loader ({why}): not a checkpoint, or one holding objects that could "
            "run code")


def read_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """The raw checkpoint dict, validated (format, version, keys, schema, mean shape)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; train one with fa-train or pass an existing .pt")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path}: not a loadable weights-only checkpoint ({_load_failure(e)}); "
                              "re-save it with fa3d.training.checkpoint.save_checkpoint") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fa3d checkpoint (no format={FORMAT!r}); only checkpoints written "
                              "by fa-train can be loaded")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {ckpt.get('format_version')} is not "
                              f"{FORMAT_VERSION}; use the fa3d version that wrote it or retrain")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}; it is incomplete, retrain or re-save it")
    ls = ckpt["landmark_schema"]
    if ls.get("name") != SCHEMA_NAME or ls.get("num_landmarks") != NUM_LANDMARKS:
        raise CheckpointError(f"{path}: landmark schema {ls} is not {SCHEMA_NAME}/{NUM_LANDMARKS}")
    if tuple(ckpt["mean_shape"].shape) != (NUM_LANDMARKS, 3):
        raise CheckpointError(f"{path}: mean_shape has shape {tuple(ckpt['mean_shape'].shape)}, expected (68, 3)")
    return ckpt


RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "epoch", "step", "position", "history", "best")


def check_resume_state(ckpt: dict, path: str | os.PathLike) -> dict:
    """The ``resume`` dict of a checkpoint read by :func:`read_checkpoint`, or a :class:`CheckpointError`
    naming what is missing (a weights-only export, a file from another tool or an older fa3d)."""
    r = ckpt.get("resume")
    if not isinstance(r, dict):
        raise CheckpointError(f"{path}: has no resume state (a weights-only export?); cannot --resume from it; "
                              "start a new run without --resume, or point --out-dir at the run to continue")
    missing = [k for k in RESUME_KEYS if k not in r]
    if missing:
        raise CheckpointError(f"{path}: its resume state lacks {missing}; it cannot continue exactly; start a "
                              "new run without --resume (or with another --out-dir)")
    return r


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (eval mode) with its metadata, config and metrics."""
    ckpt = read_checkpoint(path, map_location)
    try:
        cfg = config_from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid model_config ({e}); the checkpoint comes from an incompatible "
                              "fa3d version") from None
    try:
        meta = ArtifactMetadata.from_dict(ckpt["metadata"], where=str(path))
    except MetadataError as e:
        raise CheckpointError(str(e)) from None
    sd = ckpt["state_dict"]
    template = sd.get("dense_template")
    model = network_for(cfg, None if template is None else template.float().numpy())
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model config ({e}); the file is inconsistent, "
                              "retrain or re-save it") from None
    model.eval()
    if meta.num_dense != cfg.num_dense or meta.preprocess.input_size != cfg.input_size:
        raise CheckpointError(f"{path}: metadata (num_dense={meta.num_dense}, input_size="
                              f"{meta.preprocess.input_size}) contradicts the model config")
    return LoadedCheckpoint(model=model, metadata=meta, model_config=cfg, metrics=dict(ckpt["metrics"]),
                            train_config=dict(ckpt.get("train_config") or {}), resume=ckpt.get("resume"))


def export_weights_only(src: str | os.PathLike, dst: str | os.PathLike, half: bool = False) -> Path:
    """Copy a checkpoint without its resume state (optimizer, RNG, history): the file to ship.

    ``half`` stores floating-point weights as float16 (half the size); :func:`load_checkpoint` loads them
    back into the float32 model, so the model computes in float32 from the rounded weights.
    """
    ckpt = read_checkpoint(src)
    ckpt.pop("resume", None)
    if half:
        ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        torch.save(ckpt, tmp)
    return dst
