"""``fa-verify``: the GPU self-check. One command that proves the whole TensorRT path on this machine.

On a Jetson or a desktop GPU it takes the shipped default model (its FP32 ONNX and its verified INT8
Q/DQ ONNX; the FP16 ONNX is made when the TensorRT version needs it), and

1. builds FP32, FP16 and INT8 engines with fa-export's builder (version dispatch, timing cache);
2. runs each on real faces (crops of the bundled public-domain sample portrait) through the runtime's
   :class:`~fa3d.runtime.backends.trt.TrtBackend` and compares with ONNX Runtime on the CPU: FP32 and FP16
   within the parity tolerances of :mod:`fa3d.export.parity`, INT8 against the FP32 ONNX within the INT8
   gate's deviation thresholds (:class:`fa3d.calibration.gate.Gate`);
3. times each engine (batch 1 and the profile's OPT batch, median of 200 calls after warm-up);
4. opens a backend in this thread, runs it from a second thread and closes it there (the CUDA context
   handling a camera thread needs);
5. writes ``verify.json`` and ``verify.md`` (paste the latter into an issue).

Without TensorRT, pycuda or a GPU it says which is missing, writes the same report with that reason and
exits 3; nothing is built. Exit codes: 0 every check passed; 1 a check failed (see the report);
2 bad arguments; 3 no usable GPU here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fa3d.runtime.atomic import atomic_write_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 3
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class Check:
    name: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    status: int = EXIT_OK
    reason: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def add(self, check: Check) -> None:
        self.checks.append(check)
        if not check.passed:
            self.status = EXIT_FAILED

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "environment": self.environment,
                "checks": [asdict(c) for c in self.checks]}

    def markdown(self) -> str:
        lines = ["# fa-verify report", "", f"status: {self.status} ({'passed' if self.status == 0 else 'see below'})"]
        if self.reason:
            lines += ["", f"reason: {self.reason}"]
        lines += ["", "## environment", ""] + [f"- {k}: {v}" for k, v in self.environment.items()]
        if self.checks:
            lines += ["", "## checks", "", "| check | result | details |", "|---|---|---|"]
            for c in self.checks:
                d = json.dumps(c.details, default=str)
                lines.append(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {d[:400]} |")
        return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    """Versions and the machine, without constructing any TensorRT object."""
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg in ("fa3d", "onnxruntime", "numpy", "opencv-python", "tensorrt", "pycuda"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():  # Jetson: the L4T release tells the JetPack version
        env["l4t"] = tegra.read_text(errors="replace").splitlines()[0][:120]
    return env


# ------------------------------------------------------------------------------------------ the checks

def build_engines(work: Path, report: VerifyReport) -> dict[str, Path]:
    """FP32/FP16/INT8 engines of the shipped model in ``work``; a check per build."""
    from .int8_step import use_shipped
    from .steps import choose_build_source
    from .trt_build import BuildOptions, EngineBuildError, build_engine, import_tensorrt

    trt = import_tensorrt()
    onnx_path, _ = use_shipped(work)
    engines = {}
    for precision in PRECISIONS:
        try:
            src, prec = choose_build_source(onnx_path, precision, trt.__version__, lambda msg: None)
            res = build_engine(src, work / f"model.{precision}.plan",
                               BuildOptions(precision=prec, timing_cache=work / "timing.cache"))
        except (EngineBuildError, ValueError, RuntimeError, ImportError, OSError) as e:  # e.g. no onnx for FP16
            report.add(Check(f"build {precision}", False, {"error": f"{type(e).__name__}: {e}"}))
            continue
        engines[precision] = res.path
        report.add(Check(f"build {precision}", True, {"source": src.name, "seconds": round(res.seconds, 1),
                                                       "size_mb": round(res.size_bytes / 1e6, 2),
                                                       **res.plan.to_dict()}))
    return engines


def accuracy(engines: dict[str, Path], work: Path, report: VerifyReport) -> None:
    """Each engine against ONNX Runtime (CPU) on crops of the bundled sample portrait."""
    from fa3d.calibration.gate import Gate, compare, holds
    from fa3d.runtime.backends import open_backend
    from fa3d.runtime.metadata import read_sidecar

    from .parity import FP16_TOLERANCE, Tolerance, compare as parity_compare, parity_crops, run_onnx

    fp32_onnx = work / "model.onnx"
    crops = parity_crops(read_sidecar(fp32_onnx).preprocess, synthetic_fallback=False)
    reference = run_onnx(fp32_onnx, crops.inputs)
    tolerances = {"fp32": Tolerance(landmarks=0.05, rotation=5e-3, dense=0.05, confidence=5e-3),  # TF32
                  "fp16": FP16_TOLERANCE}
    for precision, engine in engines.items():
        with open_backend(engine) as be:
            out = be.infer(crops.inputs)
        if precision == "int8":
            gate = Gate()
            c = compare(reference, out)
            report.add(Check("accuracy int8 vs ONNX Runtime FP32", holds(c, gate),
                             {"faces": len(crops.inputs), "nme_deviation": c.nme_loss, "pose_deviation_deg": c.pose_loss,
                              "max": [gate.max_nme_deviation, gate.max_pose_deviation_deg]}))
            continue
        rep = parity_compare(reference, out, tolerances[precision], reference_name="onnxruntime",
                             candidate_name=f"tensorrt {precision}", source=crops.source)
        report.add(Check(f"accuracy {precision} vs ONNX Runtime", rep.passed, rep.to_dict()))


def timing(engines: dict[str, Path], report: VerifyReport, calls: int = 200, warmup: int = 20) -> None:
    """Median latency of each engine at batch 1 and at the profile's OPT batch, warm."""
    from fa3d.runtime.backends import open_backend
    from fa3d.runtime.timing import summarize_ms, time_calls

    figures = {}
    for precision, engine in engines.items():
        with open_backend(engine) as be:
            s = be.input_size
            for b in sorted({1, int(getattr(be, "opt_batch", 1))}):
                x = np.zeros((b, 3, s, s), np.float32)
                ms = time_calls(lambda: be.infer(x), warmup=warmup, iters=calls) * 1e3
                figures[f"{precision} batch {b}"] = round(summarize_ms(ms)["median_ms"], 3)
    report.add(Check("timing (median ms per call, host to host)", bool(figures), figures))


def second_thread(engines: dict[str, Path], report: VerifyReport) -> None:
    """Open in this thread, infer and close in another: what a camera thread does."""
    from fa3d.runtime.backends import open_backend

    engine = engines.get("fp16") or next(iter(engines.values()), None)
    if engine is None:
        return
    be = open_backend(engine)
    errors: list[str] = []

    def work() -> None:
        try:
            x = np.zeros((2, 3, be.input_size, be.input_size), np.float32)
            be.infer(x)
            be.close()
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=120)
    report.add(Check("backend used and closed from a second thread", not errors and not t.is_alive(),
                     {"engine": engine.name, "errors": errors}))


def run_verify(work: Path) -> VerifyReport:
    """Every check; the report says why nothing ran when no GPU is usable here."""
    from fa3d.runtime.backends.trt import gpu_probe

    report = VerifyReport(environment=environment())
    reason = gpu_probe()
    if reason is not None:
        report.status, report.reason = EXIT_NO_GPU, f"no GPU check possible here: {reason}"
        return report
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    engines = build_engines(work, report)
    if engines:
        accuracy(engines, work, report)
        timing(engines, report)
        second_thread(engines, report)
    report.environment["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="fa-verify", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("fa3d-verify"),
                    help="folder for the engines and the report (verify.json, verify.md); default %(default)s")
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of the markdown one")
    args = ap.parse_args(argv)
    try:
        report = run_verify(args.out)
    except Exception as e:  # noqa: BLE001 - a self-check reports, it does not crash
        report = VerifyReport(status=EXIT_FAILED, reason=f"{type(e).__name__}: {e}", environment=environment())
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "verify.json", json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    atomic_write_text(args.out / "verify.md", report.markdown())
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.markdown())
    if report.reason:
        print(f"fa-verify: {report.reason} (report: {args.out / 'verify.md'})", file=sys.stderr)
    return report.status


if __name__ == "__main__":
    raise SystemExit(main())
