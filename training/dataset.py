"""The dataset factory: ``[[data.sources]]`` entries -> sequences of FaceSample, a torch Dataset and a
weighted, distributed, resumable sampler.

A *loader* is ``loader(source: SourceConfig) -> Sequence[FaceSample]``. :func:`default_registry` maps the
config's ``kind`` to loaders (imported lazily); callers (and tests) may pass their own registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fa3d.data.datasets.labelled import LabelledFolder
from fa3d.data.datasets.mix import MixWeights, load_aflw19k
from fa3d.data.datasets.samples import FaceSample
from fa3d.data.datasets.synthetic import synth_face
from fa3d.runtime.preprocess import PreprocessConfig

from .augment import AugmentConfig, make_example
from .config import ConfigError, SourceConfig

Loader = Callable[[SourceConfig], Sequence[FaceSample]]


class SyntheticSource(Sequence):
    """``count`` synthetic faces from :func:`fa3d.data.datasets.synthetic.synth_face`, made on access."""

    def __init__(self, count: int, seed: int, size: int) -> None:
        if count < 1:
            raise ConfigError(f"a synthetic source needs count >= 1, got {count}")
        self.count, self.seed, self.size = int(count), int(seed), int(size)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> FaceSample:
        if not 0 <= i < self.count:
            raise IndexError(i)
        f = synth_face(self.seed * 1_000_003 + int(i), self.size)
        return FaceSample(image=f.image, box=f.box, name=f"synthetic_{self.seed}_{i}", source="synthetic",
                          landmarks=f.landmarks, ypr=f.ypr)


def _synthetic(src: SourceConfig) -> Sequence[FaceSample]:
    return SyntheticSource(src.count, src.seed, src.size)


def _labelled(src: SourceConfig) -> Sequence[FaceSample]:
    return LabelledFolder(src.path, weight=src.label_weight)


def _aflw19k(src: SourceConfig) -> Sequence[FaceSample]:
    try:
        weights = MixWeights(**src.mix)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[[data.sources]] aflw19k mix: {e}") from None
    return load_aflw19k(src.path, src.split, dense_labels=src.dense_labels or None, weights=weights, box=src.box,
                        teacher_file=src.teacher_file)


def _faces_extra(src: SourceConfig) -> Sequence[FaceSample]:
    from fa3d.data.datasets.mix import FacesExtraMix, MixWeights

    try:
        weights = MixWeights(**src.mix)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"[[data.sources]] faces_extra mix: {e}") from None
    return FacesExtraMix(src.path, src.split, dense_labels=src.dense_labels or None, weights=weights,
                         teacher_file=src.teacher_file or "teacher_3ddfa_v2_mb05_tta.npz", box=src.box)


def _python(src: SourceConfig) -> Sequence[FaceSample]:
    mod_name, _, fn = src.loader.partition(":")
    if not mod_name or not fn:
        raise ConfigError(f"kind = \"python\" needs loader = \"module:function\", got {src.loader!r}")
    return getattr(importlib.import_module(mod_name), fn)(src.path, src.split)


def default_registry() -> dict[str, Loader]:
    return {"synthetic": _synthetic, "labelled": _labelled, "aflw19k": _aflw19k, "faces_extra": _faces_extra,
            "python": _python}


def _sample_weights(part: Sequence[FaceSample], src: SourceConfig) -> np.ndarray:
    """Per-sample sampling weights of one source: ``src.weight`` spread over its samples, each scaled by
    ``src.yaw_weights`` of its teacher |yaw| bin (0-30, 30-60, 60-90 degrees) when the source knows them."""
    w = np.ones(len(part))
    yw = tuple(float(v) for v in src.yaw_weights)
    if yw != (1.0, 1.0, 1.0):
        bins = part.teacher_yaw_bins() if hasattr(part, "teacher_yaw_bins") else None
        if bins is None:
            raise ConfigError(f"data source {src.kind} {src.path!r}: yaw_weights needs a source with teacher "
                              "poses (aflw19k or faces_extra)")
        w = np.asarray(yw)[bins]
    return w * (src.weight / w.sum())


class MixedSamples(Sequence):
    """Several sources concatenated, with a per-sample sampling weight (source weight / source size)."""

    def __init__(self, sources: Sequence[SourceConfig], registry: Mapping[str, Loader]) -> None:
        self.parts: list[Sequence[FaceSample]] = []
        weights = []
        for src in sources:
            if src.kind not in registry:
                raise ConfigError(f"unknown data source kind {src.kind!r}; known kinds: {sorted(registry)}")
            part = registry[src.kind](src)
            if src.stride < 1:
                raise ConfigError(f"data source {src.kind} {src.path!r}: stride must be >= 1, got {src.stride}")
            if src.stride > 1:
                part = _Strided(part, src.stride)
            if len(part) == 0:
                raise ConfigError(f"data source {src.kind} {src.path!r} ({src.split}) is empty")
            self.parts.append(part)
            weights.append(_sample_weights(part, src))
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        w = np.concatenate(weights) if weights else np.zeros(0)
        self.weights = w / w.sum() if len(w) else w

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> FaceSample:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[k][int(i - self.offsets[k])]


class _Strided(Sequence):
    """Every ``stride``-th sample of a sequence, without loading the others."""

    def __init__(self, base: Sequence[FaceSample], stride: int) -> None:
        self.base, self.stride = base, int(stride)

    def __len__(self) -> int:
        return -(-len(self.base) // self.stride)

    def __getitem__(self, i: int) -> FaceSample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self.base[int(i) * self.stride]

    def teacher_yaw_bins(self) -> np.ndarray | None:
        bins = self.base.teacher_yaw_bins() if hasattr(self.base, "teacher_yaw_bins") else None
        return None if bins is None else bins[::self.stride]


class AlignmentDataset:
    """A torch-style map dataset of training examples; example ``i`` of epoch ``e`` is a pure function of
    ``(seed, e, i)``, so resuming and multi-worker loading give the same batches."""

    def __init__(self, samples: Sequence[FaceSample], pre: PreprocessConfig, augment: AugmentConfig,
                 num_dense: int, seed: int, dense_mirror: np.ndarray | None = None) -> None:
        self.samples, self.pre, self.augment = samples, pre, augment
        self.num_dense, self.seed, self.dense_mirror = num_dense, seed, dense_mirror
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        return make_example(self.samples[int(i)], self.pre, self.augment, rng, self.num_dense, self.dense_mirror)


def epoch_indices(weights: np.ndarray, count: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, weighted: bool = True) -> np.ndarray:
    """The sample indices this rank visits in an epoch: ``count`` draws for all ranks together
    (with replacement by ``weights`` when ``weighted``, else a permutation), split round-robin."""
    rng = np.random.default_rng([seed, epoch, 0x5A3])
    n = len(weights)
    if weighted:
        idx = rng.choice(n, size=count, replace=True, p=weights)
    else:
        idx = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    per_rank = count // world_size
    return idx[rank::world_size][:per_rank]


class ResumableSampler:
    """Yields :func:`epoch_indices` from position ``start`` on (the sampler position saved in checkpoints)."""

    def __init__(self, indices: np.ndarray, start: int = 0) -> None:
        self.indices, self.start = indices, int(start)

    def __iter__(self):
        return iter(int(i) for i in self.indices[self.start:])

    def __len__(self) -> int:
        return max(len(self.indices) - self.start, 0)
