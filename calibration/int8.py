"""``make_int8``: FP32 ONNX -> Q/DQ INT8 ONNX, calibrated, linted and gated, with a report.

Steps: read the FP32 model's sidecar (its preprocessing), load or build the calibration set (default:
:mod:`fa3d.calibration.default_set`), quantize (:mod:`.qdq`), evaluate INT8 against FP32 on the
validation set (:mod:`.gate`); if the gate fails, rank layers by sensitivity and keep the most
sensitive in float until it holds (at most ``Gate.max_excluded``); lint the result (:mod:`.lint`);
time both models on the CPU; write the INT8 ONNX, its sidecar and the report atomically.

A model that fails the gate is *not* written unless ``force=True`` (the report is always written when
``report_path`` is given), and the result says ``passed=False``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fa3d.runtime.atomic import atomic_path, atomic_write_text
from fa3d.runtime.metadata import read_sidecar, sha256_file, sidecar_path, write_metadata

from .calibset import CalibrationSet, load_calibration_set
from .gate import (Comparison, Gate, ValidationData, badness, benchmark_ms, greedy_exclude, holds, run_model,
                   sensitivity)
from .lint import lint_qdq
from .qdq import QdqOptions, quantizable_nodes, quantize_qdq

REPORT_SCHEMA = "fa3d.int8_report"
REPORT_VERSION = 1


@dataclass(frozen=True)
class Int8Result:
    passed: bool
    path: Path  # the INT8 ONNX (written only when passed or forced: see report["written"])
    report: dict[str, Any]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("fa3d", "onnx", "onnxruntime"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _as_validation(val, config, calib_set: CalibrationSet | None, calib_given: bool) -> tuple[ValidationData,
                                                                                             CalibrationSet | None]:
    """The validation data, and the calibration set to use (smaller when part of it is held out)."""
    if isinstance(val, ValidationData):
        return val, calib_set
    if isinstance(val, CalibrationSet):
        return ValidationData.from_set(val), calib_set
    if val is not None:
        return ValidationData.from_set(load_calibration_set(val, config)), calib_set
    if calib_given:
        cal, held = calib_set.split_holdout(every=4)
        return ValidationData.from_set(held), cal
    from .default_set import default_validation_set
    return ValidationData.from_set(default_validation_set(config)), calib_set


def make_int8(fp32_onnx: Path, out_onnx: Path, *, calib: Path | CalibrationSet | None = None,
              val: Path | CalibrationSet | ValidationData | None = None, method: str = "percentile",
              gate: Gate | None = None, force: bool = False, report_path: Path | None = None,
              progress: bool = False) -> Int8Result:
    """Quantize ``fp32_onnx`` to a TensorRT-ready Q/DQ ONNX at ``out_onnx`` behind the accuracy gate.

    ``calib``: a calibration ``.npz`` (``fa-calib``) or set; None = the default set (see
    :mod:`.default_set`, weakly representative). ``val``: a validation ``.npz``/set (with labels if you
    have them) or :class:`~fa3d.calibration.gate.ValidationData`; None = every 4th face of ``calib`` held
    out, or the default validation set when ``calib`` is None as well.
    """
    t0 = time.perf_counter()
    fp32_onnx, out_onnx = Path(fp32_onnx), Path(out_onnx)
    gate = gate or Gate()
    meta = read_sidecar(fp32_onnx)
    if meta.precision != "fp32":
        raise ValueError(f"{fp32_onnx}: its sidecar says precision {meta.precision!r}; quantize the FP32 ONNX")
    config = meta.preprocess
    if isinstance(calib, CalibrationSet):
        if calib.preprocess.fingerprint() != config.fingerprint():
            raise ValueError("the calibration set was made for another preprocessing than the model's; rebuild it")
        calib_set = calib
    elif calib is not None:
        calib_set = load_calibration_set(calib, config)
    else:
        from .default_set import default_calibration_set
        calib_set = default_calibration_set(config)
    val_data, calib_set = _as_validation(val, config, calib_set, calib is not None)
    options = QdqOptions(method=method)
    layers = quantizable_nodes(fp32_onnx, options.op_types)

    with tempfile.TemporaryDirectory(prefix="fa3d-int8-") as tmpdir:
        tmp = Path(tmpdir)
        cache = tmp / f"ranges.{method}.json"
        counter = [0]

        def quantize(excluded: tuple[str, ...]) -> Path:
            counter[0] += 1
            path = tmp / f"q{counter[0]}.onnx"
            opts = QdqOptions(method=method, percentile=options.percentile, nodes_to_exclude=tuple(excluded))
            first = not cache.is_file()
            quantize_qdq(fp32_onnx, path, calib_set.inputs if first else None, opts, calibration_cache=cache)
            return path

        fp32_out = run_model(fp32_onnx, val_data.inputs, batch_size=gate.batch_size, threads=gate.threads)

        def evaluate_path(path: Path) -> Comparison:
            from .gate import compare
            out = run_model(path, val_data.inputs, batch_size=gate.batch_size, threads=gate.threads)
            return compare(fp32_out, out, landmarks=val_data.landmarks, ypr=val_data.ypr, reference=gate.reference)

        path = quantize(())
        initial = evaluate_path(path)
        final, excluded, ranking, steps = initial, (), [], []
        if not holds(initial, gate):
            candidates = layers
            if gate.max_sensitivity_layers is not None:
                candidates = layers[-gate.max_sensitivity_layers:]  # the heads sit last in graph order
            ranking = sensitivity(quantize, evaluate_path, candidates, gate, initial, progress=progress)
            helpful = [s.layer for s in ranking if s.gain > 0][:max(0, len(layers) - 1)]  # keep one quantized
            excluded, final, path, steps = greedy_exclude(quantize, evaluate_path, helpful, gate)
        passed = holds(final, gate)
        summary = lint_qdq(path)
        sample = val_data.inputs[:1]
        speed = {"fp32": benchmark_ms(fp32_onnx, sample, runs=gate.bench_runs, threads=gate.threads),
                 "int8": benchmark_ms(path, sample, runs=gate.bench_runs, threads=gate.threads)}
        speed["int8_speedup"] = speed["fp32"]["median_ms"] / max(speed["int8"]["median_ms"], 1e-9)
        written = passed or force
        if written:
            with atomic_path(out_onnx) as dst:
                shutil.copyfile(path, dst)
            write_metadata(sidecar_path(out_onnx), meta.with_(precision="int8",
                                                              source_sha256=sha256_file(fp32_onnx)))

    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "schema_version": REPORT_VERSION,
        "fp32_onnx": str(fp32_onnx),
        "fp32_sha256": sha256_file(fp32_onnx),
        "int8_onnx": str(out_onnx),
        "written": written,
        "passed": passed,
        "forced": bool(force and not passed),
        "method": method,
        "quantization": {"format": "QDQ", "opset": summary.opset, "activations": "int8 symmetric per-tensor",
                         "weights": "int8 symmetric per-channel (float weight -> Q -> DQ)",
                         "bias": "float", "op_types": list(options.op_types),
                         "quantize_nodes": summary.quantize_nodes, "weight_pairs": summary.weight_pairs},
        "gate": asdict(gate),
        "calibration": {"source": calib_set.source, "count": len(calib_set),
                        "preprocess_fingerprint": config.fingerprint()},
        "validation": {"source": val_data.source, "count": int(len(val_data.inputs)),
                       "labelled_landmarks": val_data.landmarks is not None, "labelled_pose": val_data.ypr is not None},
        "layers": len(layers),
        "initial": initial.to_dict(),
        "initial_holds": holds(initial, gate),
        "sensitivity": [s.to_dict() for s in ranking],
        "greedy_steps": steps,
        "excluded_layers": list(excluded),
        "final": final.to_dict(),
        "final_badness": badness(final, gate),
        "speed_cpu": speed,
        "versions": _versions(),
        "seconds": time.perf_counter() - t0,
    }
    if report_path is not None:
        import json
        atomic_write_text(report_path, json.dumps(report, indent=2, default=_json_default) + "\n")
    return Int8Result(passed=passed, path=out_onnx, report=report)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def make_int8_cli_summary(result: Int8Result) -> str:
    """A few lines for a CLI to print (fa-export --int8)."""
    r = result.report
    f = r["final"]
    lines = [f"INT8 gate {'PASSED' if r['passed'] else 'FAILED'} ({f['reference']} reference): "
             f"NME loss {f['nme_loss']:.3f} (max {r['gate']['max_nme_increase']}), pose loss "
             f"{f['pose_loss']:.3f} deg (max {r['gate']['max_pose_increase_deg']})",
             f"layers kept in float: {r['excluded_layers'] or 'none'}",
             f"CPU latency batch 1: FP32 {r['speed_cpu']['fp32']['median_ms']:.2f} ms, INT8 "
             f"{r['speed_cpu']['int8']['median_ms']:.2f} ms (median of {r['speed_cpu']['int8']['runs']})"]
    if not r["written"]:
        lines.append(f"{r['int8_onnx']} NOT written (gate failed); use --force to write it anyway")
    return "\n".join(lines)


__all__ = ["Int8Result", "make_int8", "make_int8_cli_summary", "Gate"]
