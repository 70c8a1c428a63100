"""Every numerical comparison of fa3d runs through Polygraphy: ``Comparator.run`` then ``compare_accuracy``.

Runners (Polygraphy's ``BaseRunner`` interface):

* :func:`onnxrt_runner`: Polygraphy's ``OnnxrtRunner`` over the runtime's one CPU session helper;
* :func:`callable_runner`: any function ``inputs -> outputs``: a PyTorch model, or an fa3d backend (the
  runtime's ``TrtBackend`` on a GPU, which is what ``fa-run --engine`` runs; ``OrtBackend`` here).

Compare functions, one or both per comparison:

* :func:`tolerance_compare`: Polygraphy's ``SimpleCompareFunc`` on the *maximum* absolute difference of each
  output. Polygraphy fails an output only when both its atol and its rtol are exceeded, so ``rtol`` is set to
  0: a relative tolerance of 0 is only met by identical outputs, which leaves the absolute tolerance (crop
  pixels for landmarks and dense points, matrix entries for the rotation) alone deciding, as
  :class:`fa3d.export.parity.Tolerance` states it.
* :func:`gate_compare`: the INT8 accuracy gate's deviation metrics (:mod:`fa3d.calibration.gate`): the NME of
  the candidate's 68 landmarks against the reference's, and the mean yaw/pitch/roll difference of the pose
  the runtime reports.

Batches are run one per iteration (the runners see the batch sizes asked for); the iterations of each runner
are then joined into one before comparing, so that the gate's means are over every face, as the gate defines
them, and the maximum differences are over every face too.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.metadata import INPUT_NAME

pg_comparator = lazy_import("polygraphy.comparator", extra="export")
pg_onnxrt = lazy_import("polygraphy.backend.onnxrt", extra="export")
pg_base = lazy_import("polygraphy.backend.base", extra="export")
pg_common = lazy_import("polygraphy.common", extra="export")
pg_logger = lazy_import("polygraphy.logger", extra="export")

Outputs = Mapping[str, np.ndarray]


class ComparisonFailed(RuntimeError):
    """A candidate's outputs differ from the reference's beyond the tolerance or the gate."""


# ---------------------------------------------------------------- runners

def onnxrt_runner(path: str | Path, name: str | None = None, threads: int = 1) -> Any:
    """Polygraphy's ``OnnxrtRunner`` on the runtime's CPU session (quiet log, ``threads`` intra-op threads)."""
    return pg_onnxrt.OnnxrtRunner(lambda: cpu_session(path, threads), name=name or f"onnxruntime {Path(path).name}")


@functools.cache
def _callable_runner_class() -> type:
    """Defined on first use: Polygraphy's ``BaseRunner`` is imported lazily."""

    class CallableRunner(pg_base.BaseRunner):
        """Runs ``fn(x) -> {output: array}`` on the input ``input_name`` (float32, any batch)."""

        def __init__(self, fn: Callable[[np.ndarray], Outputs], name: str, input_name: str, shape: tuple,
                     open_: Callable[[], Any] | None = None) -> None:
            super().__init__(name=name, prefix="fa3d-runner")
            self._fn, self._input, self._shape, self._open = fn, input_name, shape, open_
            self._resource = None

        def activate_impl(self) -> None:
            if self._open is not None:
                self._resource = self._open()

        def get_input_metadata_impl(self) -> Any:
            meta = pg_common.TensorMetadata()
            meta.add(self._input, dtype=np.float32, shape=self._shape)
            return meta

        def infer_impl(self, feed_dict: Mapping[str, np.ndarray]) -> OrderedDict:
            t0 = time.perf_counter()
            out = self._fn(np.ascontiguousarray(feed_dict[self._input], dtype=np.float32)) if self._open is None \
                else self._fn(self._resource, np.ascontiguousarray(feed_dict[self._input], dtype=np.float32))
            self.inference_time = time.perf_counter() - t0
            return OrderedDict((k, np.asarray(v)) for k, v in out.items())

        def deactivate_impl(self) -> None:
            resource, self._resource = self._resource, None
            close = getattr(resource, "close", None)
            if callable(close):
                close()

    return CallableRunner


def callable_runner(fn: Callable[..., Outputs], name: str, *, input_size: int, input_name: str = INPUT_NAME,
                    open_: Callable[[], Any] | None = None) -> Any:
    """A Polygraphy runner over ``fn``. With ``open_``, the runner opens the resource (e.g. a backend) when it is
    activated, calls ``fn(resource, x)`` and closes the resource when it is deactivated."""
    return _callable_runner_class()(fn, name, input_name, (None, 3, input_size, input_size), open_)


def backend_runner(path: str | Path, name: str | None = None, **backend_options: Any) -> Any:
    """The fa3d runtime backend of ``path`` (``.plan``: TensorRT; ``.onnx``: ONNX Runtime) as a runner."""
    from fa3d.runtime.backends import open_backend
    from fa3d.runtime.metadata import read_sidecar

    size = read_sidecar(Path(path)).preprocess.input_size
    return callable_runner(lambda be, x: be.infer(x), name or f"fa3d backend {Path(path).name}", input_size=size,
                           open_=lambda: open_backend(path, **backend_options))


# ---------------------------------------------------------------- compare functions

@dataclass(frozen=True)
class GateMetric:
    """One gate metric of a comparison: truthy when it is within its threshold (what Polygraphy reads)."""

    name: str
    value: float
    threshold: float

    def __bool__(self) -> bool:
        return bool(self.value <= self.threshold)  # NaN fails

    def __str__(self) -> str:
        return f"{self.name} {self.value:.4g} (max {self.threshold:g})"


def tolerance_compare(tolerance: Mapping[str, float]) -> Any:
    """Polygraphy's ``SimpleCompareFunc``: maximum absolute difference per output within ``tolerance[output]``;
    ``rtol=0`` so that the absolute tolerance alone decides (see the module docstring)."""
    return pg_comparator.SimpleCompareFunc(atol=dict(tolerance), rtol=0.0, check_error_stat="max")


def gate_compare(max_nme: float, max_pose_deg: float, pose_source: str | None = None) -> Callable:
    """The gate's deviation metrics as a Polygraphy compare function (reference first, candidate second)."""
    from fa3d.calibration.gate import compare
    from fa3d.runtime.policy import DEFAULT_POSE_SOURCE

    def compare_func(reference: Any, candidate: Any) -> OrderedDict:
        ref = {k: np.asarray(reference[k]) for k in ("landmarks", "rotation")}
        cand = {k: np.asarray(candidate[k]) for k in ("landmarks", "rotation")}
        c = compare(ref, cand, reference="fp32", pose_source=pose_source or DEFAULT_POSE_SOURCE)
        return OrderedDict([("landmarks", GateMetric("NME %", c.nme_loss, max_nme)),
                            ("rotation", GateMetric("pose deg", c.pose_loss, max_pose_deg))])

    return compare_func


# ---------------------------------------------------------------- running and comparing

@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a candidate runner with a reference runner."""

    reference: str
    candidate: str
    faces: int
    batches: tuple[int, ...]
    source: str = ""
    max_abs: dict[str, float] = field(default_factory=dict)  # per output (tolerance_compare)
    tolerance: dict[str, float] = field(default_factory=dict)
    gate: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> {value, max} (gate_compare)
    passed: bool = False

    @property
    def failures(self) -> dict[str, float]:
        bad = {k: v for k, v in self.max_abs.items() if not v <= self.tolerance.get(k, float("inf"))}
        bad.update({k: d["value"] for k, d in self.gate.items() if not d["value"] <= d["max"]})
        return bad

    def summary(self) -> str:
        parts = [f"{k} {v:.2e} (tol {self.tolerance[k]:.0e})" for k, v in self.max_abs.items()]
        parts += [f"{k} {d['value']:.3g} (max {d['max']:g})" for k, d in self.gate.items()]
        return (f"{self.candidate} vs {self.reference} on {self.faces} faces"
                + (f" ({self.source})" if self.source else "") + f" in batches of {list(self.batches)}: "
                + ", ".join(parts))

    def raise_if_failed(self) -> None:
        if not self.passed:
            bad = ", ".join(f"{k} {v:.3g} > {self.tolerance.get(k, self.gate.get(k, {}).get('max', float('nan'))):.3g}"
                            for k, v in self.failures.items())
            raise ComparisonFailed(f"{self.candidate} vs {self.reference}: {bad} ({self.faces} faces)")

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "candidate": self.candidate, "faces": self.faces,
                "source": self.source, "batches": list(self.batches), "max_abs": dict(self.max_abs),
                "tolerance": dict(self.tolerance), "gate": dict(self.gate), "passed": self.passed}


@dataclass(frozen=True)
class Feeds:
    """Polygraphy's data loader (a list of feed dicts) covering ``faces`` faces once per batch size."""

    feeds: tuple[dict[str, np.ndarray], ...]
    faces: int
    sizes: tuple[int, ...]
    source: str = ""  # where the faces came from, for the report


def batches_of(inputs: np.ndarray, sizes: Iterable[int], input_name: str = INPUT_NAME, source: str = "") -> Feeds:
    """Feed dicts covering every row of ``inputs`` once per batch size in ``sizes`` (the last batch of a pass
    may be smaller)."""
    sizes = tuple(int(b) for b in sizes)
    if not sizes or min(sizes) < 1 or len(inputs) == 0:
        raise ValueError(f"batches_of needs faces and batch sizes >= 1, got {len(inputs)} faces, sizes {sizes}")
    feeds = tuple({input_name: np.ascontiguousarray(inputs[i:i + b], dtype=np.float32)}
                  for b in sizes for i in range(0, len(inputs), b))
    return Feeds(feeds=feeds, faces=len(inputs), sizes=sizes, source=source)


def _joined(results: Any) -> Any:
    """A copy of Polygraphy's ``RunResults`` with each runner's iterations joined along the batch axis."""
    joined = pg_comparator.RunResults()
    for name, iterations in results.items():
        outs = {k: np.concatenate([np.asarray(it[k]) for it in iterations]) for k in iterations[0].keys()}
        joined.append((name, [pg_comparator.IterationResult(outs, runner_name=name)]))
    return joined


def compare_runners(reference: Any, candidate: Any, feeds: Feeds, *, tolerance: Mapping[str, float] | None = None,
                    gate: Callable | None = None) -> Comparison:
    """Run both runners on ``feeds`` (Polygraphy's ``Comparator.run``) and compare the candidate with the
    reference (``Comparator.compare_accuracy``) with :func:`tolerance_compare` and/or ``gate``."""
    if tolerance is None and gate is None:
        raise ValueError("compare_runners needs a tolerance, a gate or both")
    log = pg_logger.G_LOGGER
    funcs = ([tolerance_compare(tolerance)] if tolerance is not None else []) + ([gate] if gate is not None else [])
    with log.verbosity(log.CRITICAL):  # Polygraphy's statistics and summaries stay quiet: the caller reports
        results = pg_comparator.Comparator.run([reference, candidate], data_loader=list(feeds.feeds))
        accuracy = pg_comparator.Comparator.compare_accuracy(_joined(results), compare_func=funcs)
    pair = (reference.name, candidate.name)
    max_abs: dict[str, float] = {}
    gate_metrics: dict[str, dict[str, float]] = {}
    for result in accuracy:
        for out, res in result[pair][0].items():
            if isinstance(res, GateMetric):
                gate_metrics[res.name] = {"value": float(res.value), "max": float(res.threshold)}
            else:
                max_abs[out] = float(res.max_absdiff)
    return Comparison(reference=reference.name, candidate=candidate.name, faces=feeds.faces, batches=feeds.sizes,
                      source=feeds.source, max_abs=max_abs, tolerance=dict(tolerance or {}), gate=gate_metrics, passed=bool(accuracy))
