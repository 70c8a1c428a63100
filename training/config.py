"""The training configuration: a TOML file with the tables below, parsed into frozen dataclasses.

```toml
[model]      preset = "edge", fuse_pose = true, num_dense = 468, dense_template = "template.npy" (optional)
[model.overrides]  any field of the preset's config (ModelConfig or MobileConfig), e.g. depth_bins = 32
[data]       batch_size, num_workers, samples_per_epoch (0 = the training set's size), val_batch_size
[[data.sources]]  kind = "synthetic" | "aflw19k" | "faces_extra" | "labelled" | "python", path, split, weight, count, seed,
                  size, loader = "module:function" (kind python), dense_labels, box, teacher_file, yaw_weights,
                  [data.sources.mix]
[[data.val]]      the same, for validation (no augmentation)
[augment]    fa3d.training.augment.AugmentConfig fields
[loss]       fa3d.training.losses.LossWeights fields
[optim]      lr, weight_decay, epochs, warmup_steps, grad_clip, amp, ema_decay, train_only
[teacher_forcing]  p0, anneal_fraction
[run]        out_dir, seed, checkpoint_every, log_every, tensorboard, device, stop_after_steps, select_metric,
             init_from
```
Relative paths are relative to the current working directory.
"""

from __future__ import annotations

import math
import os
import tomllib
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fa3d.data.datasets.mix import BOX_RULES

from .augment import AugmentConfig
from .losses import LossWeights


class ConfigError(ValueError):
    """A training configuration is malformed."""


@dataclass(frozen=True)
class SourceConfig:
    kind: str
    path: str = ""
    split: str = "train"
    weight: float = 1.0  # relative sampling weight of the source (per sample: weight / len(source))
    count: int = 0  # synthetic: number of faces
    seed: int = 0  # synthetic: seed
    size: int = 160  # synthetic: image size
    loader: str = ""  # python: "module:function" called as function(path, split) -> Sequence[FaceSample]
    label_weight: float = 1.0  # labelled: weight of the folder's (teacher) labels
    dense_labels: str = ""  # aflw19k: an fa-label output folder of MediaPipe dense points for these crops
    mix: dict = field(default_factory=dict)  # aflw19k: fa3d.data.datasets.mix.MixWeights fields
    box: str = "teacher"  # aflw19k, faces_extra: "teacher" (tight 68-point box) or "protocol" (the whole crop)
    teacher_file: str = ""  # aflw19k: the teacher labels file in the data folder ("" = teacher_3ddfa_v2_mb05.npz)
    stride: int = 1  # keep every stride-th sample (e.g. a quicker validation subset)
    # sampling weight per teacher |yaw| bin (0-30, 30-60, 60-90 deg): oversamples large poses (aflw19k, faces_extra)
    yaw_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        yw = self.yaw_weights
        if len(yw) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                   and v > 0 for v in yw):
            raise ValueError(f"yaw_weights must be three positive numbers (0-30, 30-60, 60-90 deg), got {yw!r}")
        object.__setattr__(self, "yaw_weights", tuple(float(v) for v in yw))


@dataclass(frozen=True)
class ModelSection:
    preset: str = "edge"
    fuse_pose: bool = True
    num_dense: int | None = None
    dense_template: str = ""  # optional .npy (N, 3) template in the mean-shape model frame
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSection:
    sources: tuple[SourceConfig, ...] = ()
    val: tuple[SourceConfig, ...] = ()
    batch_size: int = 32
    val_batch_size: int = 64
    num_workers: int = 2
    samples_per_epoch: int = 0


@dataclass(frozen=True)
class OptimSection:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    warmup_steps: int = 500
    grad_clip: float = 5.0
    amp: bool = True  # only takes effect on CUDA
    ema_decay: float = 0.0  # > 0: validate and save (best.pt) an exponential moving average of the weights
    # parameter-name prefixes to train (e.g. ["confidence"]: the face confidence alone); the rest of the network
    # is frozen, its batch-norm statistics included. Empty: train everything.
    train_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not isinstance(self.train_only, (list, tuple)) or not all(isinstance(n, str) and n for n in self.train_only):
            raise ValueError(f"train_only must be a list of parameter-name prefixes (e.g. [\"confidence\"]), "
                             f"got {self.train_only!r}")
        object.__setattr__(self, "train_only", tuple(self.train_only))


@dataclass(frozen=True)
class TeacherForcingSection:
    p0: float = 0.8
    anneal_fraction: float = 0.6  # p reaches 0 after this fraction of the total steps


@dataclass(frozen=True)
class RunSection:
    out_dir: str = "runs/train"
    seed: int = 0
    checkpoint_every: int = 500  # steps; last.pt is also written at every epoch end
    log_every: int = 10
    tensorboard: bool = True
    device: str = "auto"  # auto | cpu | cuda
    stop_after_steps: int = 0  # > 0: stop (as if killed) after this global step, leaving last.pt
    select_metric: str = "nme68"  # validation metric (lower is better) that picks best.pt
    init_from: str = ""  # a checkpoint whose weights start a new run (fine-tuning); ignored by --resume


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    augment: AugmentConfig = AugmentConfig()
    loss: LossWeights = LossWeights()
    optim: OptimSection = OptimSection()
    teacher_forcing: TeacherForcingSection = TeacherForcingSection()
    run: RunSection = RunSection()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["data"]["sources"] = [asdict(s) for s in self.data.sources]
        d["data"]["val"] = [asdict(s) for s in self.data.val]
        if d["model"]["num_dense"] is None:
            del d["model"]["num_dense"]
        return d

    def with_run(self, **changes) -> "TrainConfig":
        from dataclasses import replace
        return replace(self, run=replace(self.run, **changes))


#: numeric fields that must be > 0 (every other number must be >= 0; none may be NaN or infinite)
POSITIVE = frozenset({"epochs", "batch_size", "val_batch_size", "lr", "log_every", "checkpoint_every", "stride",
                      "size", "heatmap_sigma", "wing_w", "wing_eps"})
#: string fields with a fixed set of values
CHOICES = {"device": ("auto", "cpu", "cuda"), "box": BOX_RULES}
#: numeric fields that are fractions in [0, 1] (also every field whose name ends in ``_prob``)
FRACTIONS = frozenset({"p0", "anneal_fraction", "ema_decay"})


def _type_name(tp) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table",
             type(None): "absent"}
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if tp is tuple or typing.get_origin(tp) is tuple:
        return "an array"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _type_ok(value: Any, tp) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is tuple or origin is tuple:
        return isinstance(value, (list, tuple))
    return True


def check_fields(cls, d: dict[str, Any], where: str) -> None:
    """Check every key of ``d`` against the type of ``cls``'s field of that name, then its range: numbers
    finite and >= 0, :data:`POSITIVE` ones > 0, probabilities (``*_prob``, :data:`FRACTIONS`) in [0, 1],
    :data:`CHOICES` among their values.
    Raises :class:`ConfigError` naming the key, the value and what it must be."""
    hints = typing.get_type_hints(cls)
    for key, value in d.items():
        tp = hints.get(key)
        if tp is None:
            continue
        if not _type_ok(value, tp):
            raise ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{where}: {key} must be one of {list(CHOICES[key])}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        if key in POSITIVE and value <= 0:
            raise ConfigError(f"{where}: {key} must be > 0, got {value!r}")
        if (key in FRACTIONS or key.endswith("_prob")) and not 0 <= value <= 1:
            raise ConfigError(f"{where}: {key} must be in [0, 1], got {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: {key} must be >= 0, got {value!r}")


def _section(cls, d: Any, where: str):
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a table")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys are {sorted(names)}")
    check_fields(cls, d, where)
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def config_from_dict(d: dict[str, Any], where: str = "config") -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown tables {unknown}; valid tables are {sorted(known)}")
    data = dict(d.get("data") or {})
    sources = tuple(_section(SourceConfig, s, f"{where} [[data.sources]]") for s in data.pop("sources", []))
    val = tuple(_section(SourceConfig, s, f"{where} [[data.val]]") for s in data.pop("val", []))
    data_sec = _section(DataSection, data, f"{where} [data]")
    from dataclasses import replace
    data_sec = replace(data_sec, sources=sources, val=val)
    if not sources:
        raise ConfigError(f"{where}: [data] needs at least one [[data.sources]] entry")
    return TrainConfig(
        model=_section(ModelSection, d.get("model"), f"{where} [model]"), data=data_sec,
        augment=_section(AugmentConfig, d.get("augment"), f"{where} [augment]"),
        loss=_section(LossWeights, d.get("loss"), f"{where} [loss]"),
        optim=_section(OptimSection, d.get("optim"), f"{where} [optim]"),
        teacher_forcing=_section(TeacherForcingSection, d.get("teacher_forcing"), f"{where} [teacher_forcing]"),
        run=_section(RunSection, d.get("run"), f"{where} [run]"))


def load_config(path: str | os.PathLike) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: training config not found (see training/configs/*.toml for examples)")
    try:
        d = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return config_from_dict(d, where=str(path))
