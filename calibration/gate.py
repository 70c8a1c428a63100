"""The accuracy gate: an INT8 ONNX against its FP32 model, with ONNX Runtime on CPU, on real faces.

Metrics (per face, then averaged):

* **NME** of the 68 points in percent: mean 2D point distance divided by ``sqrt(w * h)`` of the reference
  landmarks' tight box (the AFLW2000-3D / 3DDFA normalisation). The reference is the FP32 model's output
  (always computed) and, when the validation set has 68-point labels, the ground truth (then the gate
  reads the NME *increase* of INT8 over FP32 against the labels).
* **pose**: geodesic angle in degrees between rotations, and yaw/pitch/roll MAE; against FP32 always,
  against the labelled ``ypr`` when present (then the increase of the yaw/pitch/roll MAE). The rotation is
  the one the runtime reports (``Gate.pose_source``, default the runtime's: the fit to the 68 landmarks).

Two kinds of gate, one per reference, each metric with its own threshold:

* **labels** (a labelled validation set): the *accuracy loss*, i.e. INT8's NME against the labels minus
  FP32's (``max_nme_increase``, default 0.1 points) and the same for the mean yaw/pitch/roll MAE
  (``max_pose_increase_deg``, default 0.3 deg);
* **fp32** (unlabelled faces): the *deviation* of INT8 from FP32, i.e. the NME of INT8's landmarks against
  FP32's (``max_nme_deviation``, default 1.0 point) and the mean yaw/pitch/roll difference
  (``max_pose_deviation_deg``, default 1.5 deg). By the triangle inequality, per face and per angle,
  ``|err(int8, gt) - err(fp32, gt)| <= err(int8, fp32)``, so the deviation bounds the accuracy loss from
  above whatever the labels would be (up to the normalising box, FP32's instead of the label's). It is a
  loose bound: on the default model and 600 aflw19k val faces the deviation is 0.53 NME points while the
  loss against labels is 0.04. Hence a larger threshold meant for a deviation, not the loss threshold.

When the gate does not hold, :func:`greedy_exclude` keeps layers in float one by one, in the order of a
one-pass ranking by quantization noise (:mod:`.ranking`), until it holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fa3d.data.evaluation.metrics import nme
from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.policy import DEFAULT_POSE_SOURCE, POSE_SOURCES
from fa3d.runtime.pose import geodesic_deg, matrix_to_euler, reported_rotation
from fa3d.runtime.timing import summarize_ms, time_calls

from .calibset import build_from_crops

REFERENCES = ("auto", "fp32", "labels")


@dataclass(frozen=True)
class Gate:
    max_nme_increase: float = 0.1  # labels: NME loss in points (percent of sqrt(w*h))
    max_pose_increase_deg: float = 0.3  # labels: increase of the mean yaw/pitch/roll MAE
    max_nme_deviation: float = 1.0  # no labels: NME of INT8 against FP32 (an upper bound of the loss)
    max_pose_deviation_deg: float = 1.5  # no labels: mean |yaw/pitch/roll difference| INT8 vs FP32
    reference: str = "auto"  # "labels" when the validation set has them, else "fp32"
    max_excluded: int = 8  # at most this many layers tried in float by the greedy search
    greedy_faces: int = 128  # the greedy steps evaluate on this many validation faces; the result on all
    batch_size: int = 16
    threads: int = 1  # ONNX Runtime intra-op threads for the gate's runs and benchmark
    bench_runs: int = 30
    pose_source: str = DEFAULT_POSE_SOURCE  # the pose the runtime reports (runtime.policy.POSE_SOURCES)

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"gate reference {self.reference!r} is not one of {REFERENCES}")
        if self.pose_source not in POSE_SOURCES:
            raise ValueError(f"gate pose source {self.pose_source!r} is not one of {POSE_SOURCES}")
        if min(self.max_nme_increase, self.max_pose_increase_deg, self.max_nme_deviation,
               self.max_pose_deviation_deg) < 0:
            raise ValueError("gate thresholds must be >= 0")


# --------------------------------------------------------------------------------------------- inference

def session(onnx_path: str | os.PathLike, threads: int = 1):
    return cpu_session(onnx_path, threads)


def run_model(onnx_path: str | os.PathLike, inputs: np.ndarray, *, batch_size: int = 16,
              threads: int = 1, desc: str | None = None) -> dict[str, np.ndarray]:
    """All outputs of an ONNX model over ``inputs`` (N, 3, S, S), batched; a progress bar when ``desc``."""
    sess = session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    bs = fixed if isinstance(fixed, int) and fixed > 0 else batch_size
    outs: dict[str, list[np.ndarray]] = {o.name: [] for o in sess.get_outputs()}
    starts = range(0, len(inputs), bs)
    if desc:
        starts = tqdm(starts, desc=desc, unit="batch")
    for i in starts:
        x = np.ascontiguousarray(inputs[i:i + bs], dtype=np.float32)
        for o, v in zip(outs, sess.run(None, {name: x})):
            outs[o].append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


# ------------------------------------------------------------------------------------------------ metrics

def nme_percent(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-face NME (%) of (N, 68, >=2) points against (N, 68, >=2), normalised by sqrt(w*h) of ref's box."""
    return nme(pred, ref)  # the one NME of the package


def ypr_mae(r_pred: np.ndarray, ypr_ref: np.ndarray) -> np.ndarray:
    """(N, 3) absolute yaw, pitch, roll errors in degrees, wrapped to [0, 180]."""
    d = matrix_to_euler(r_pred) - np.asarray(ypr_ref, np.float64)
    return np.abs((d + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True)
class Comparison:
    nme_vs_fp32: float  # mean NME (%) of INT8 landmarks against FP32 landmarks
    pose_geodesic_vs_fp32: float  # mean geodesic angle (deg) between INT8 and FP32 rotations
    ypr_mae_vs_fp32: tuple[float, float, float]
    nme_gt_fp32: float | None = None
    nme_gt_int8: float | None = None
    pose_mae_gt_fp32: float | None = None  # mean of yaw, pitch, roll MAE against labels
    pose_mae_gt_int8: float | None = None
    reference: str = "fp32"  # "labels" when either metric is read against labels
    nme_loss: float = 0.0  # what the gate reads: a loss against labels, or a deviation from FP32
    pose_loss: float = 0.0
    nme_reference: str = "fp32"  # which threshold applies to nme_loss: "labels" (increase) or "fp32" (deviation)
    pose_reference: str = "fp32"

    def to_dict(self) -> dict:
        return asdict(self)


def compare(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], *, landmarks: np.ndarray | None = None,
            ypr: np.ndarray | None = None, reference: str = "auto",
            pose_source: str = DEFAULT_POSE_SOURCE) -> Comparison:
    """Compare INT8 outputs with FP32 outputs (and with labels when given); the pose is ``pose_source``'s."""
    lf, li = fp32["landmarks"], int8["landmarks"]
    rf = reported_rotation(pose_source, fp32["rotation"], lf)
    ri = reported_rotation(pose_source, int8["rotation"], li)
    c = dict(nme_vs_fp32=float(nme_percent(li, lf).mean()),
             pose_geodesic_vs_fp32=float(geodesic_deg(rf, ri).mean()),
             ypr_mae_vs_fp32=tuple(float(v) for v in ypr_mae(ri, matrix_to_euler(rf)).mean(axis=0)))
    if landmarks is not None:
        c["nme_gt_fp32"] = float(nme_percent(lf, landmarks).mean())
        c["nme_gt_int8"] = float(nme_percent(li, landmarks).mean())
    if ypr is not None:
        c["pose_mae_gt_fp32"] = float(ypr_mae(rf, ypr).mean())
        c["pose_mae_gt_int8"] = float(ypr_mae(ri, ypr).mean())
    if reference == "labels" and landmarks is None and ypr is None:
        raise ValueError("gate reference 'labels' needs a validation set with landmark or pose labels")
    use_labels = reference == "labels" or (reference == "auto" and (landmarks is not None or ypr is not None))
    deviation_pose = float(np.mean(c["ypr_mae_vs_fp32"]))  # bounds the yaw/pitch/roll MAE increase
    lm_labels, pose_labels = use_labels and landmarks is not None, use_labels and ypr is not None
    c["reference"] = "labels" if use_labels else "fp32"
    c["nme_reference"], c["pose_reference"] = ("labels" if lm_labels else "fp32"), ("labels" if pose_labels else "fp32")
    c["nme_loss"] = (c["nme_gt_int8"] - c["nme_gt_fp32"]) if lm_labels else c["nme_vs_fp32"]
    c["pose_loss"] = (c["pose_mae_gt_int8"] - c["pose_mae_gt_fp32"]) if pose_labels else deviation_pose
    return Comparison(**c)


def thresholds(c: Comparison, gate: Gate) -> tuple[float, float]:
    """The (NME, pose) thresholds that apply to ``c``: loss thresholds against labels, else deviation ones."""
    nme = gate.max_nme_increase if c.nme_reference == "labels" else gate.max_nme_deviation
    pose = gate.max_pose_increase_deg if c.pose_reference == "labels" else gate.max_pose_deviation_deg
    return nme, pose


def holds(c: Comparison, gate: Gate) -> bool:
    nme, pose = thresholds(c, gate)
    return c.nme_loss <= nme and c.pose_loss <= pose


def badness(c: Comparison, gate: Gate) -> float:
    """How far over the gate a comparison is (<= 1 means it holds), the larger of the two ratios."""
    eps = 1e-9
    nme, pose = thresholds(c, gate)
    return max(c.nme_loss / max(nme, eps), c.pose_loss / max(pose, eps))


# -------------------------------------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class ValidationData:
    """What the gate evaluates on: model inputs, optional labels (crop pixels / degrees)."""

    inputs: np.ndarray
    landmarks: np.ndarray | None = None
    ypr: np.ndarray | None = None
    source: str = ""

    @classmethod
    def from_set(cls, cs) -> "ValidationData":
        return cls(inputs=cs.inputs, landmarks=cs.landmarks, ypr=cs.ypr, source=cs.source)

    def spread(self, count: int) -> "ValidationData":
        """At most ``count`` faces, evenly spread over the set (itself when it is that small)."""
        n = len(self.inputs)
        if n <= count:
            return self
        idx = np.linspace(0, n - 1, count).round().astype(np.int64)
        pick = (lambda a: None if a is None else a[idx])  # noqa: E731
        return ValidationData(inputs=self.inputs[idx], landmarks=pick(self.landmarks), ypr=pick(self.ypr),
                              source=f"{count} of {self.source}")


def validation_from_faces(items: Sequence[tuple[np.ndarray, np.ndarray]], config, *,
                          landmarks: Sequence[np.ndarray] | None = None, ypr: Sequence[np.ndarray] | None = None,
                          source: str = "faces") -> ValidationData:
    """A validation set from (BGR image, face box) pairs, cropped with the runtime's preprocessing.

    ``landmarks`` (68, 3) in image pixels and ``ypr`` (3,) degrees are optional labels. This is the entry
    point for evaluating on e.g. the aflw19k val split (whose crops are not copied anywhere).
    """
    cs = build_from_crops([i for i, _ in items], np.stack([np.asarray(b, np.float64) for _, b in items]),
                          config, landmarks=landmarks, ypr=ypr, source=source)
    return ValidationData.from_set(cs)


def evaluate(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike, val: ValidationData, gate: Gate,
             fp32_outputs: dict[str, np.ndarray] | None = None, desc: str | None = None) -> Comparison:
    """INT8 against FP32 (and the labels of ``val``) on ``val``; ``fp32_outputs`` saves re-running FP32;
    ``desc``: a progress bar over the INT8 run."""
    ref = fp32_outputs if fp32_outputs is not None else run_model(fp32_onnx, val.inputs,
                                                                  batch_size=gate.batch_size, threads=gate.threads)
    out = run_model(int8_onnx, val.inputs, batch_size=gate.batch_size, threads=gate.threads, desc=desc)
    return compare(ref, out, landmarks=val.landmarks, ypr=val.ypr, reference=gate.reference,
                   pose_source=gate.pose_source)


# ------------------------------------------------------------------------------------------ fallback

#: (layers kept in float) -> path of an INT8 model quantized that way
Quantizer = Callable[[tuple[str, ...]], Path]


def greedy_exclude(quantize: Quantizer, evaluate_path: Callable[[Path], Comparison], ranking: Sequence[str],
                   gate: Gate, start: tuple[str, ...] = (), first: tuple[Path, Comparison] | None = None,
                   progress: bool = False) -> tuple[tuple[str, ...], Comparison, Path, list[dict]]:
    """Try layers of ``ranking`` in float, noisiest first, until the gate holds or ``max_excluded`` were tried.

    A layer stays in float only when that lowers :func:`badness`. ``first``: the model quantized with
    ``start`` excluded and its comparison, when already evaluated. Returns (excluded layers, the final
    comparison, the final model path, the steps tried).
    """
    excluded = tuple(start)
    steps = []
    if first is None:
        path = quantize(excluded)
        c = evaluate_path(path)
    else:
        path, c = first
    todo = list(ranking)[:max(0, gate.max_excluded - len(excluded))]
    if progress and todo and not holds(c, gate):
        todo = tqdm(todo, desc="INT8 gate: layers back to float", unit="layer")
    for layer in todo:
        if holds(c, gate):
            break
        trial = excluded + (layer,)
        trial_path = quantize(trial)
        t = evaluate_path(trial_path)
        kept = badness(t, gate) < badness(c, gate)
        steps.append({"layer": layer, "excluded": list(trial), "nme_loss": t.nme_loss, "pose_loss": t.pose_loss,
                      "holds": holds(t, gate), "kept": kept})
        if kept:
            excluded, path, c = trial, trial_path, t
    return excluded, c, path, steps


# --------------------------------------------------------------------------------------------- benchmark

def benchmark_ms(onnx_path: str | os.PathLike, sample: np.ndarray, *, runs: int = 30, warmup: int = 5,
                 threads: int = 1) -> dict[str, float]:
    """Latency of one batch on ONNX Runtime CPU: median, p10 and p90 in milliseconds."""
    sess = session(onnx_path, threads)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(sample, dtype=np.float32)}
    stats = summarize_ms(time_calls(lambda: sess.run(None, feed), warmup, max(1, runs)) * 1e3)
    return {"median_ms": stats["median_ms"], "p10_ms": stats["p10_ms"], "p90_ms": stats["p90_ms"],
            "runs": stats["runs"], "batch": int(len(sample)), "threads": int(threads)}
