"""INT8 for ONNX Runtime's CPU kernels (robots without an NVIDIA GPU), shipped only when it pays.

The TensorRT-style Q/DQ model (:mod:`.qdq`: symmetric int8 activations, Q/DQ pairs on float weights) is
laid out for TensorRT's fusions; ONNX Runtime's CPU kernels run it slower than FP32. This module makes the
layout ONNX Runtime recommends for x86 and ARM CPUs instead: the model pre-processed
(``quant_pre_process``), then QOperator format (QLinearConv, MatMulInteger...) with **uint8 asymmetric
activations and int8 symmetric per-channel weights** (U8S8), and ``reduce_range`` (7-bit weights) on x86
CPUs without VNNI, where U8S8 products can saturate.

:func:`measure` gates it like the TensorRT model (:func:`.gate.evaluate`) and times it against FP32 on one
thread, interleaved (:func:`fa3d.runtime.timing.interleaved`). ``python -m tools.cpu_int8 FP32.onnx
--calib SET --val SET`` writes ``model.cpu-int8.onnx`` only when it is faster than FP32 *and* passes the gate,
and prints the figures either way (exit 0 written, 1 not worth shipping, 2 bad input).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fa3d.calibration.gate import Gate, ValidationData, evaluate, holds


def has_vnni() -> bool:
    """Whether this CPU has VNNI (x86 AVX512-VNNI / AVX-VNNI); ARM has no saturation issue (treated as VNNI)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False  # unknown: the safe choice is reduce_range
    return "avx512_vnni" in flags or "avx_vnni" in flags


def quantize_cpu(fp32_onnx: str | os.PathLike, out_onnx: str | os.PathLike, inputs: np.ndarray, *,
                 method: str = "percentile", reduce_range: bool | None = None) -> Path:
    """Write a U8S8 QOperator INT8 model of ``fp32_onnx`` for ONNX Runtime's CPU kernels (atomically)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fa3d.runtime.atomic import atomic_path

    from fa3d.calibration.qdq import calibration_reader, equal_batch, input_name, quiet_ort

    method_enum = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                   "percentile": CalibrationMethod.Percentile}[method]
    rr = (not has_vnni()) if reduce_range is None else reduce_range
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.99
    with tempfile.TemporaryDirectory(prefix="fa3d-cpu-int8-") as tmp, atomic_path(out_onnx) as dst, quiet_ort():
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(str(fp32_onnx), pre, skip_symbolic_shape=True)
        reader = calibration_reader(input_name(fp32_onnx), inputs, equal_batch(len(inputs), 8))
        quantize_static(pre, str(dst), reader, quant_format=QuantFormat.QOperator, per_channel=True,
                        reduce_range=rr, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method_enum, extra_options=extra)
    return Path(out_onnx)


@dataclass(frozen=True)
class CpuInt8Figures:
    passed_gate: bool
    nme_loss: float
    pose_loss: float
    reference: str
    fp32_ms: float  # median ms, batch 1, one thread, interleaved with int8_ms
    int8_ms: float
    speedup: float  # fp32_ms / int8_ms: above 1 means INT8 is faster
    reduce_range: bool

    @property
    def worth_shipping(self) -> bool:
        return self.passed_gate and self.speedup > 1.0


def measure(fp32_onnx: str | os.PathLike, int8_onnx: str | os.PathLike, val: ValidationData,
            gate: Gate = Gate(), rounds: int = 20) -> CpuInt8Figures:
    """Gate and interleaved one-thread batch-1 timing of ``int8_onnx`` against ``fp32_onnx``."""
    from fa3d.runtime.backends.onnxrt import cpu_session
    from fa3d.runtime.timing import interleaved

    c = evaluate(fp32_onnx, int8_onnx, val, gate)
    x = np.ascontiguousarray(val.inputs[:1], dtype=np.float32)
    sessions = {"fp32": cpu_session(fp32_onnx, 1), "int8": cpu_session(int8_onnx, 1)}
    fns = {k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for k, s in sessions.items()}
    ms = {k: float(np.median(v)) for k, v in interleaved(fns, rounds=rounds, calls_per_round=10).items()}
    return CpuInt8Figures(passed_gate=holds(c, gate), nme_loss=c.nme_loss, pose_loss=c.pose_loss,
                          reference=c.reference, fp32_ms=ms["fp32"], int8_ms=ms["int8"],
                          speedup=ms["fp32"] / max(ms["int8"], 1e-9), reduce_range=not has_vnni())


def main(argv: list[str] | None = None) -> int:
    from fa3d.runtime.metadata import read_sidecar, sidecar_path, write_metadata

    from fa3d.calibration.calibset import load_calibration_set

    ap = argparse.ArgumentParser(prog="python -m tools.cpu_int8", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="the FP32 ONNX (with its sidecar)")
    ap.add_argument("--calib", type=Path, required=True, help="calibration set .npz (fa-calib)")
    ap.add_argument("--val", type=Path, required=True, help="validation set .npz (labelled for the loss gate)")
    ap.add_argument("--method", choices=("percentile", "entropy", "minmax"), default="percentile")
    ap.add_argument("--out", type=Path, default=None, help="default: model.cpu-int8.onnx beside the model")
    args = ap.parse_args(argv)
    out = args.out or args.model.with_name("model.cpu-int8.onnx")
    try:
        meta = read_sidecar(args.model)
        calib = load_calibration_set(args.calib, meta.preprocess)
        val = ValidationData.from_set(load_calibration_set(args.val, meta.preprocess))
        with tempfile.TemporaryDirectory() as tmp:
            cand = quantize_cpu(args.model, Path(tmp) / "cpu.onnx", calib.inputs, method=args.method)
            figures = measure(args.model, cand, val)
            if figures.worth_shipping:
                shutil.move(str(cand), str(out))
                write_metadata(sidecar_path(out), meta.with_(precision="int8", model={
                    **meta.model, "cpu_int8": asdict(figures)}))
    except (OSError, ValueError) as e:
        print(f"cpu_int8: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**asdict(figures), "written": str(out) if figures.worth_shipping else None}, indent=2))
    return 0 if figures.worth_shipping else 1


if __name__ == "__main__":
    raise SystemExit(main())
