"""The accuracy gate: an INT8 ONNX against its FP32 model, with ONNX Runtime on CPU, on real faces.

Metrics (per face, then averaged):

* **NME** of the 68 points in percent: mean 2D point distance divided by ``sqrt(w * h)`` of the reference
  landmarks' tight box (the AFLW2000-3D / 3DDFA normalisation). The reference is the FP32 model's output
  (always computed) and, when the validation set has 68-point labels, the ground truth (then the gate
  reads the NME *increase* of INT8 over FP32 against the labels).
* **pose**: geodesic angle in degrees between rotations, and yaw/pitch/roll MAE; against FP32 always,
  against the labelled ``ypr`` when present (then the increase of the yaw/pitch/roll MAE).

The gate holds when the NME loss is at most ``max_nme_increase`` points and the pose loss at most
``max_pose_increase_deg``. When it does not, :func:`sensitivity` quantizes the model with one layer kept in
float at a time, ranks layers by how much the loss falls, and :func:`greedy_exclude` keeps the most
sensitive layers in float until the gate holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.pose import geodesic_deg, matrix_to_euler
from fa3d.runtime.timing import summarize_ms, time_calls

REFERENCES = ("auto", "fp32", "labels")


@dataclass(frozen=True)
class Gate:
    max_nme_increase: float = 0.1  # NME points (percent of sqrt(w*h))
    max_pose_increase_deg: float = 0.3
    reference: str = "auto"  # "labels" when the validation set has them, else "fp32"
    max_excluded: int = 8  # at most this many layers kept in float by the greedy search
    max_sensitivity_layers: int | None = None  # None = every quantized layer is tried
    batch_size: int = 16
    threads: int = 1  # ONNX Runtime intra-op threads for the gate's runs and benchmark
    bench_runs: int = 30

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"gate reference {self.reference!r} is not one of {REFERENCES}")
        if self.max_nme_increase < 0 or self.max_pose_increase_deg < 0:
            raise ValueError("gate thresholds must be >= 0")


# --------------------------------------------------------------------------------------------- inference

def session(onnx_path: str | os.PathLike, threads: int = 1):
    return cpu_session(onnx_path, threads)


def run_model(onnx_path: str | os.PathLike, inputs: np.ndarray, *, batch_size: int = 16,
              threads: int = 1) -> dict[str, np.ndarray]:
    """All outputs of an ONNX model over ``inputs`` (N, 3, S, S), batched."""
    sess = session(onnx_path, threads)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    bs = fixed if isinstance(fixed, int) and fixed > 0 else batch_size
    outs: dict[str, list[np.ndarray]] = {o.name: [] for o in sess.get_outputs()}
    for i in range(0, len(inputs), bs):
        x = np.ascontiguousarray(inputs[i:i + bs], dtype=np.float32)
        for o, v in zip(outs, sess.run(None, {name: x})):
            outs[o].append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


# ------------------------------------------------------------------------------------------------ metrics

def nme_percent(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-face NME (%) of (N, 68, >=2) points against (N, 68, >=2), normalised by sqrt(w*h) of ref's box."""
    from fa3d.runtime.evaluation.metrics import nme  # numpy only: the one NME of the package

    return nme(pred, ref)


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
    reference: str = "fp32"
    nme_loss: float = 0.0  # what the gate reads
    pose_loss: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def compare(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], *, landmarks: np.ndarray | None = None,
            ypr: np.ndarray | None = None, reference: str = "auto") -> Comparison:
    """Compare INT8 outputs with FP32 outputs (and with labels when given)."""
    lf, li = fp32["landmarks"], int8["landmarks"]
    rf, ri = fp32["rotation"], int8["rotation"]
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
    if use_labels:
        c["reference"] = "labels"
        c["nme_loss"] = (c["nme_gt_int8"] - c["nme_gt_fp32"]) if landmarks is not None else c["nme_vs_fp32"]
        c["pose_loss"] = (c["pose_mae_gt_int8"] - c["pose_mae_gt_fp32"]) if ypr is not None \
            else c["pose_geodesic_vs_fp32"]
    else:
        c["reference"] = "fp32"
        c["nme_loss"] = c["nme_vs_fp32"]
        c["pose_loss"] = c["pose_geodesic_vs_fp32"]
    return Comparison(**c)


def holds(c: Comparison, gate: Gate) -> bool:
    return c.nme_loss <= gate.max_nme_increase and c.pose_loss <= gate.max_pose_increase_deg


def badness(c: Comparison, gate: Gate) -> float:
    """How far over the gate a comparison is (<= 1 means it holds), the larger of the two ratios."""
    eps = 1e-9
    return max(c.nme_loss / max(gate.max_nme_increase, eps), c.pose_loss / max(gate.max_pose_increase_deg, eps))


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


def validation_from_faces(items: Sequence[tuple[np.ndarray, np.ndarray]], config, *,
                          landmarks: Sequence[np.ndarray] | None = None, ypr: Sequence[np.ndarray] | None = None,
                          source: str = "faces") -> ValidationData:
    """A validation set from (BGR image, face box) pairs, cropped with the runtime's preprocessing.

    ``landmarks`` (68, 3) in image pixels and ``ypr`` (3,) degrees are optional labels. This is the entry
    point for evaluating on e.g. the aflw19k val split (whose crops are not copied anywhere).
    """
    from .calibset import build_from_crops
    cs = build_from_crops([i for i, _ in items], np.stack([np.asarray(b, np.float64) for _, b in items]),
                          config, landmarks=landmarks, ypr=ypr, source=source)
    return ValidationData.from_set(cs)


def evaluate(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike, val: ValidationData, gate: Gate,
             fp32_outputs: dict[str, np.ndarray] | None = None) -> Comparison:
    ref = fp32_outputs if fp32_outputs is not None else run_model(fp32_onnx, val.inputs,
                                                                  batch_size=gate.batch_size, threads=gate.threads)
    out = run_model(int8_onnx, val.inputs, batch_size=gate.batch_size, threads=gate.threads)
    return compare(ref, out, landmarks=val.landmarks, ypr=val.ypr, reference=gate.reference)


# ----------------------------------------------------------------------------------- sensitivity analysis

#: (layers kept in float) -> path of an INT8 model quantized that way
Quantizer = Callable[[tuple[str, ...]], Path]


@dataclass(frozen=True)
class LayerSensitivity:
    layer: str
    nme_loss: float  # the loss with this layer (and those already excluded) kept in float
    pose_loss: float
    gain: float  # badness with everything quantized minus badness with this layer in float

    def to_dict(self) -> dict:
        return asdict(self)


def sensitivity(quantize: Quantizer, evaluate_path: Callable[[Path], Comparison], layers: Sequence[str],
                gate: Gate, baseline: Comparison, already_excluded: tuple[str, ...] = (),
                progress: bool = False) -> list[LayerSensitivity]:
    """Leave-one-out: for each layer, quantize everything else, measure, rank by the loss it removes."""
    base = badness(baseline, gate)
    todo = [layer for layer in layers if layer not in already_excluded]
    if progress:
        from tqdm import tqdm
        todo = tqdm(todo, desc="per-layer sensitivity", unit="layer")
    out = []
    for layer in todo:
        c = evaluate_path(quantize(tuple(already_excluded) + (layer,)))
        out.append(LayerSensitivity(layer=layer, nme_loss=c.nme_loss, pose_loss=c.pose_loss,
                                    gain=base - badness(c, gate)))
    return sorted(out, key=lambda s: -s.gain)


def greedy_exclude(quantize: Quantizer, evaluate_path: Callable[[Path], Comparison], ranking: Sequence[str],
                   gate: Gate, start: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Comparison, Path, list[dict]]:
    """Keep layers of ``ranking`` in float, most sensitive first, until the gate holds or the limit is hit.

    Returns (excluded layers, the final comparison, the final model path, the steps taken).
    """
    excluded = tuple(start)
    steps = []
    path = quantize(excluded)
    c = evaluate_path(path)
    for layer in ranking:
        if holds(c, gate) or len(excluded) >= gate.max_excluded:
            break
        excluded = excluded + (layer,)
        path = quantize(excluded)
        c = evaluate_path(path)
        steps.append({"excluded": list(excluded), "nme_loss": c.nme_loss, "pose_loss": c.pose_loss,
                      "holds": holds(c, gate)})
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
