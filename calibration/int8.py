"""``make_int8``: FP32 ONNX -> Q/DQ INT8 ONNX, calibrated, linted and gated, with a report.

Steps: read the FP32 model's sidecar (its preprocessing); load or build the calibration set from the
user's data (a set file from ``fa-calib``, a folder of images, an image or a video: there is no default,
activation ranges must come from the camera's faces); quantize (:mod:`.qdq`); evaluate INT8 against FP32
on the validation set (:func:`.gate.evaluate`); if the gate fails, rank the layers by quantization noise
in one pass (:mod:`.ranking`) and keep the noisiest in float, greedily, until it holds (at most
``Gate.max_excluded``); lint the result (:mod:`.lint`); time both models on the CPU; write the INT8 ONNX,
its sidecar (gate figures and recipe under ``model["int8"]``, the FP32 file's hash as ``source_sha256``)
and the report atomically.

A model that fails the gate is *not* written unless ``force=True`` (the report is always written when
``report_path`` is given), and the result says ``passed=False``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from fa3d.runtime.atomic import atomic_path, atomic_write_text
from fa3d.runtime.metadata import ArtifactMetadata, read_sidecar, sha256_file, sidecar_path, write_metadata

from .calibset import (CalibrationSet, CalibrationSetError, build_calibration_set, load_calibration_set,
                       runtime_detector)
from .gate import Comparison, Gate, ValidationData, badness, benchmark_ms, evaluate, greedy_exclude, holds, run_model
from .lint import LintSummary, lint_qdq
from .qdq import QdqOptions, quantizable_nodes, quantize_qdq
from .ranking import rank_layers

REPORT_SCHEMA = "fa3d.int8_report"
REPORT_VERSION = 2
SET_SUFFIX = ".npz"


class CalibrationRequired(ValueError):
    """No calibration data was given for a model that has no shipped INT8 file."""


@dataclass(frozen=True)
class Int8Result:
    passed: bool
    path: Path  # the INT8 ONNX (written only when passed or forced: see report["written"])
    report: dict[str, Any]


@dataclass
class SearchResult:
    """What the quantize -> gate -> fallback search found (``path`` lives in the search's temp folder)."""

    path: Path
    initial: Comparison
    final: Comparison
    excluded: tuple[str, ...] = ()
    ranking: list = field(default_factory=list)
    steps: list = field(default_factory=list)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("fa3d", "onnx", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# ---------------------------------------------------------------------------------------------- data

def _load_set(src: Path | CalibrationSet, config, role: str, progress: bool) -> CalibrationSet:
    """A set file (``.npz``), or faces found by the runtime's detector in images / a video."""
    if isinstance(src, CalibrationSet):
        if src.preprocess.fingerprint() != config.fingerprint():
            raise CalibrationSetError(f"the {role} set was made for another preprocessing than the model's; "
                                      "rebuild it with fa-calib --model <this model>")
        return src
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"{src}: {role} data not found (give a fa-calib .npz set, a folder of images, "
                                "an image or a video)")
    if src.suffix.lower() == SET_SUFFIX:
        return load_calibration_set(src, config)
    return build_calibration_set(src, config, detector=runtime_detector(), max_faces=256, progress=progress)


def resolve_data(calib, val, config, progress: bool = False) -> tuple[CalibrationSet, ValidationData]:
    """(calibration set, validation data). ``val=None``: every 4th face of the calibration data is held out."""
    if calib is None:
        raise CalibrationRequired(
            "INT8 calibration needs faces from your camera: give --calib (a fa-calib .npz set, a folder of "
            "face images, an image or a video). Only the shipped default model has a ready INT8 file")
    calib_set = _load_set(calib, config, "calibration", progress)
    if isinstance(val, ValidationData):
        return calib_set, val
    if val is not None:
        return calib_set, ValidationData.from_set(_load_set(val, config, "validation", progress))
    cal, held = calib_set.split_holdout(every=4)
    return cal, ValidationData.from_set(held)


# -------------------------------------------------------------------------------------------- search

def search(fp32_onnx: Path, calib_set: CalibrationSet, val: ValidationData, gate: Gate, options: QdqOptions,
           tmp: Path, progress: bool = False) -> SearchResult:
    """Quantize, gate, and if needed keep the noisiest layers in float until the gate holds."""
    cache = tmp / f"ranges.{options.method}.json"
    counter = [0]

    def quantize(excluded: tuple[str, ...]) -> Path:
        counter[0] += 1
        path = tmp / f"q{counter[0]}.onnx"
        opts = QdqOptions(method=options.method, percentile=options.percentile, batch_size=options.batch_size,
                          op_types=options.op_types, nodes_to_exclude=tuple(excluded))
        first = not cache.is_file()
        quantize_qdq(fp32_onnx, path, calib_set.inputs if first else None, opts, calibration_cache=cache,
                     progress=progress and first)
        return path

    fp32_out = run_model(fp32_onnx, val.inputs, batch_size=gate.batch_size, threads=gate.threads,
                         desc="INT8 gate: FP32 reference" if progress else None)

    def evaluate_path(path: Path) -> Comparison:
        return evaluate(fp32_onnx, path, val, gate, fp32_outputs=fp32_out,
                        desc="INT8 gate: INT8 model" if progress else None)

    path = quantize(())
    initial = evaluate_path(path)
    result = SearchResult(path=path, initial=initial, final=initial)
    if holds(initial, gate):
        return result
    layers = quantizable_nodes(fp32_onnx, options.op_types)
    result.ranking = rank_layers(path, val.inputs, layers, batch_size=gate.batch_size, threads=gate.threads)
    order = [r.layer for r in result.ranking if r.score > 0][:max(0, len(layers) - 1)]  # keep one quantized
    small = val.spread(gate.greedy_faces)  # greedy steps on a spread subset, the outcome on every face
    idx = np.linspace(0, len(val.inputs) - 1, len(small.inputs)).round().astype(np.int64)
    small_ref = {k: v[idx] for k, v in fp32_out.items()} if small is not val else fp32_out

    def evaluate_small(p: Path) -> Comparison:
        return evaluate(fp32_onnx, p, small, gate, fp32_outputs=small_ref)

    result.excluded, _, result.path, result.steps = greedy_exclude(
        quantize, evaluate_small, order, gate, first=(path, evaluate_small(path)), progress=progress)
    result.final = evaluate_path(result.path) if result.excluded else initial
    return result


# ------------------------------------------------------------------------------------- report, files

def int8_block(report: dict[str, Any]) -> dict[str, Any]:
    """What the INT8 ONNX's sidecar keeps of the report (``model["int8"]``): gate figures and recipe."""
    f = report["final"]
    return {"gate": {"passed": report["passed"], "forced": report["forced"], "reference": f["reference"],
                     "nme_loss": f["nme_loss"], "pose_loss": f["pose_loss"], "nme_reference": f["nme_reference"],
                     "pose_reference": f["pose_reference"], "pose_source": report["gate"].get("pose_source"),
                     "nme_gt_fp32": f["nme_gt_fp32"],
                     "nme_gt_int8": f["nme_gt_int8"], "pose_mae_gt_fp32": f["pose_mae_gt_fp32"],
                     "pose_mae_gt_int8": f["pose_mae_gt_int8"], "nme_vs_fp32": f["nme_vs_fp32"],
                     "thresholds": {k: report["gate"][k] for k in ("max_nme_increase", "max_pose_increase_deg",
                                                                   "max_nme_deviation", "max_pose_deviation_deg")}},
            "recipe": {"method": report["method"], "percentile": report["percentile"],
                       "calibration": report["calibration"], "validation": report["validation"],
                       "excluded_layers": report["excluded_layers"], "quantization": report["quantization"]},
            "fp32_sha256": report["fp32_sha256"], "versions": report["versions"]}


def _report(fp32_onnx: Path, out_onnx: Path, found: SearchResult, gate: Gate, options: QdqOptions,
            calib_set: CalibrationSet, val: ValidationData, summary: LintSummary, speed: dict, *,
            written: bool, force: bool, layers: int, seconds: float) -> dict[str, Any]:
    passed = holds(found.final, gate)
    return {
        "schema": REPORT_SCHEMA, "schema_version": REPORT_VERSION,
        "fp32_onnx": str(fp32_onnx), "fp32_sha256": sha256_file(fp32_onnx), "int8_onnx": str(out_onnx),
        "written": written, "passed": passed, "forced": bool(force and not passed),
        "method": options.method, "percentile": options.percentile if options.method == "percentile" else None,
        "quantization": {"format": "QDQ", "opset": summary.opset, "activations": "int8 symmetric per-tensor",
                         "weights": "int8 symmetric per-channel (float weight -> Q -> DQ)",
                         "bias": "float", "op_types": list(options.op_types),
                         "quantize_nodes": summary.quantize_nodes, "weight_pairs": summary.weight_pairs},
        "gate": asdict(gate),
        "calibration": {"source": calib_set.source, "count": len(calib_set),
                        "preprocess_fingerprint": calib_set.preprocess.fingerprint()},
        "validation": {"source": val.source, "count": int(len(val.inputs)),
                       "labelled_landmarks": val.landmarks is not None, "labelled_pose": val.ypr is not None},
        "layers": layers,
        "initial": found.initial.to_dict(), "initial_holds": holds(found.initial, gate),
        "ranking": [r.to_dict() for r in found.ranking],
        "greedy_steps": found.steps, "excluded_layers": list(found.excluded),
        "final": found.final.to_dict(), "final_badness": badness(found.final, gate),
        "speed_cpu": speed, "versions": _versions(), "seconds": seconds,
    }


def _write_model(src: Path, out_onnx: Path, meta: ArtifactMetadata, report: dict[str, Any]) -> None:
    with atomic_path(out_onnx) as dst:
        shutil.copyfile(src, dst)
    block = {**int8_block(report), "int8_sha256": sha256_file(src)}  # lets a later check skip re-linting
    write_metadata(sidecar_path(out_onnx), meta.with_(precision="int8", source_sha256=report["fp32_sha256"],
                                                      model={**meta.model, "int8": block}))


def _speed(fp32_onnx: Path, int8_onnx: Path, sample: np.ndarray, gate: Gate) -> dict[str, Any]:
    speed = {"fp32": benchmark_ms(fp32_onnx, sample, runs=gate.bench_runs, threads=gate.threads),
             "int8": benchmark_ms(int8_onnx, sample, runs=gate.bench_runs, threads=gate.threads)}
    speed["int8_speedup"] = speed["fp32"]["median_ms"] / max(speed["int8"]["median_ms"], 1e-9)
    return speed


def make_int8(fp32_onnx: Path, out_onnx: Path, *, calib: Path | CalibrationSet | None = None,
              val: Path | CalibrationSet | ValidationData | None = None, method: str = "percentile",
              gate: Gate | None = None, force: bool = False, report_path: Path | None = None,
              progress: bool = False) -> Int8Result:
    """Quantize ``fp32_onnx`` to a TensorRT-ready Q/DQ ONNX at ``out_onnx`` behind the accuracy gate.

    ``calib``: required: a calibration ``.npz`` (``fa-calib``), set, folder of images, image or video.
    ``val``: validation data of the same kinds (with labels if you have them: ``fa-calib`` on an
    ``fa-label`` folder) or :class:`~fa3d.calibration.gate.ValidationData`; None = every 4th face of
    ``calib`` held out. Raises :class:`CalibrationRequired` without ``calib``.
    """
    t0 = time.perf_counter()
    fp32_onnx, out_onnx = Path(fp32_onnx), Path(out_onnx)
    gate = gate or Gate()
    meta = read_sidecar(fp32_onnx)
    if meta.precision != "fp32":
        raise ValueError(f"{fp32_onnx}: its sidecar says precision {meta.precision!r}; quantize the FP32 ONNX")
    calib_set, val_data = resolve_data(calib, val, meta.preprocess, progress)
    options = QdqOptions(method=method)
    with tempfile.TemporaryDirectory(prefix="fa3d-int8-") as tmpdir:
        found = search(fp32_onnx, calib_set, val_data, gate, options, Path(tmpdir), progress)
        summary = lint_qdq(found.path)
        speed = _speed(fp32_onnx, found.path, val_data.inputs[:1], gate)
        written = holds(found.final, gate) or force
        report = _report(fp32_onnx, out_onnx, found, gate, options, calib_set, val_data, summary, speed,
                         written=written, force=force, layers=len(quantizable_nodes(fp32_onnx, options.op_types)),
                         seconds=time.perf_counter() - t0)
        if written:
            _write_model(found.path, out_onnx, meta, report)
    if report_path is not None:
        atomic_write_text(report_path, json.dumps(report, indent=2, default=_json_default) + "\n")
    return Int8Result(passed=report["passed"], path=out_onnx, report=report)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def gate_summary(block: dict[str, Any]) -> str:
    """One line about the gate from a sidecar's ``model["int8"]["gate"]`` (or a report's equivalent)."""
    g, t = block, block["thresholds"]
    if g["nme_reference"] == "labels":
        nme = (f"NME loss {g['nme_loss']:+.3f} points against labels (FP32 {g['nme_gt_fp32']:.3f}, INT8 "
               f"{g['nme_gt_int8']:.3f}; max {t['max_nme_increase']})")
    else:
        nme = f"NME deviation from FP32 {g['nme_loss']:.3f} points (max {t['max_nme_deviation']})"
    which = {"landmarks": "pose (fitted to the landmarks)", "head": "pose (pose head)",
             "blend": "pose (blend)"}.get(g.get("pose_source"), "pose")  # sidecars before 2026-12-02: the head's
    if g["pose_reference"] == "labels":
        pose = f"{which} loss {g['pose_loss']:+.3f} deg (max {t['max_pose_increase_deg']})"
    else:
        pose = f"{which} deviation from FP32 {g['pose_loss']:.3f} deg (max {t['max_pose_deviation_deg']})"
    return f"INT8 gate {'PASSED' if g['passed'] else 'FAILED'}: {nme}, {pose}"


def make_int8_cli_summary(result: Int8Result) -> str:
    """A few lines for a CLI to print (fa-export --int8)."""
    r = result.report
    lines = [gate_summary(int8_block(r)["gate"]),
             f"calibrated on {r['calibration']['count']} faces ({r['method']}), gated on "
             f"{r['validation']['count']} faces; layers kept in float: {r['excluded_layers'] or 'none'}",
             f"CPU latency batch 1: FP32 {r['speed_cpu']['fp32']['median_ms']:.2f} ms, INT8 (Q/DQ, TensorRT "
             f"layout) {r['speed_cpu']['int8']['median_ms']:.2f} ms (median of {r['speed_cpu']['int8']['runs']})"]
    if not r["written"]:
        lines.append(f"{r['int8_onnx']} NOT written (gate failed); use --force to write it anyway")
    return "\n".join(lines)


__all__ = ["CalibrationRequired", "Int8Result", "make_int8", "make_int8_cli_summary", "gate_summary", "int8_block",
           "Gate"]
