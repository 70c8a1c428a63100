"""``fa-verify``: the GPU self-check. One command that proves the whole TensorRT path on this machine.

On a Jetson or a desktop GPU it takes the shipped default model (its FP32 ONNX and its verified INT8
Q/DQ ONNX; the FP16 ONNX is made, and parity-checked, when the TensorRT version needs it), and

1. builds FP32, FP16 and INT8 engines with fa-export's builder (and FP16 and INT8 engines for DLA core N
   with --dla-core N);
2. counts the layers per precision the engine inspector reports for each engine (an INT8 engine must run
   INT8 layers, an FP16 one FP16 layers, an FP32 one neither);
3. runs the face of every frame of the bundled sample clip through each engine with the runtime's
   TensorRT backend, at batch 1, the profile's OPT batch and its largest batch, and compares with ONNX
   Runtime on the CPU through Polygraphy's Comparator: FP32 and FP16 engines with the FP32 ONNX within
   stated tolerances; the INT8 engine with ONNX Runtime running the same Q/DQ model (a tight tolerance)
   and with the FP32 ONNX through the INT8 accuracy gate; builds the face detector's FP16 engine (what
   fa-export builds beside the model) and compares it, run by the runtime's detector session, with its
   FP32 ONNX on every frame of the clip;
4. times each engine (batch 1 and the OPT batch, median of --timing-calls calls after warm-up);
5. opens a backend in this thread, runs it from a second thread and closes it there (the CUDA context
   handling a camera thread needs);
6. writes verify.json and verify.md (paste the latter into an issue).

Without TensorRT, pycuda or a GPU it says which is missing, writes the same report with that reason and
exits 3; nothing is built.

exit status:
  0  every check passed
  1  a check failed (see the report)
  2  bad arguments
  3  no usable GPU here (TensorRT, pycuda or the driver is missing): nothing was built
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
from fa3d.runtime.backends.trt import gpu_probe

from .defaults import DEFAULT_BATCH
from .trt_build import BatchProfile

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 3
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class VerifyOptions:
    out: Path = Path("fa3d-verify")
    batch: BatchProfile = BatchProfile(*DEFAULT_BATCH)
    dla_core: int | None = None  # also build and check FP16 and INT8 engines for this DLA core
    every: int = 1  # use every N-th frame of the bundled clip (1: every frame)
    timing_calls: int = 200

    def __post_init__(self) -> None:
        if self.every < 1 or self.timing_calls < 1:
            raise ValueError("--every and --timing-calls must be >= 1")
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"--dla-core must be >= 0, got {self.dla_core}")


@dataclass(frozen=True)
class Engine:
    """One engine fa-verify built: its label ("int8", "fp16 dla0"), file, precision and source ONNX."""

    label: str
    path: Path
    precision: str
    source: Path
    dla_core: int | None = None


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
                lines.append(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {d[:600]} |")
        return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    """Versions and the machine, without constructing any TensorRT object."""
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg in ("fa3d", "onnxruntime", "numpy", "opencv-python", "polygraphy", "tensorrt", "pycuda"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():  # Jetson: the L4T release tells the JetPack version
        env["l4t"] = tegra.read_text(errors="replace").splitlines()[0][:120]
    return env


# ------------------------------------------------------------------------------------------ the checks

def build_engines(work: Path, options: VerifyOptions, report: VerifyReport) -> list[Engine]:
    """FP32/FP16/INT8 engines of the shipped model in ``work`` (+ FP16/INT8 for the DLA); a check per build."""
    from .int8_step import use_shipped
    from .steps import ExportFailure, choose_build_source
    from .trt_build import BuildOptions, EngineBuildError, build_engine, import_tensorrt

    trt = import_tensorrt()
    onnx_path, _ = use_shipped(work)
    wanted = [(p, None) for p in PRECISIONS]
    if options.dla_core is not None:
        wanted += [(p, options.dla_core) for p in ("fp16", "int8")]
    engines = []
    for precision, dla in wanted:
        label = precision + (f" dla{dla}" if dla is not None else "")
        try:
            src, prec = choose_build_source(onnx_path, precision, trt.__version__, lambda msg: None)
            res = build_engine(src, work / f"model.{label.replace(' ', '.')}.plan", BuildOptions(
                precision=prec, batch=options.batch, dla_core=dla, timing_cache=work / "timing.cache"))
        except (EngineBuildError, ExportFailure, ValueError, RuntimeError, ImportError, OSError) as e:
            report.add(Check(f"build {label}", False, {"error": f"{type(e).__name__}: {e}"}))
            continue
        engines.append(Engine(label, res.path, prec, src, dla))
        report.add(Check(f"build {label}", True, {"source": src.name, "seconds": round(res.seconds, 1),
                                                  "size_mb": round(res.size_bytes / 1e6, 2), **res.plan.to_dict()}))
    return engines


def layers_check(engine: Engine) -> Check:
    """The engine inspector's count of layers per precision; the engine's own precision must show."""
    from .engine_inspect import InspectError, layer_precisions

    try:
        counts = layer_precisions(engine.path)
    except (InspectError, RuntimeError, OSError) as e:
        return Check(f"layers per precision {engine.label}", False, {"error": f"{type(e).__name__}: {e}"})
    low = {p: counts.get(p, 0) for p in ("int8", "fp16")}
    passed = {"int8": low["int8"] > 0, "fp16": low["fp16"] > 0 and low["int8"] == 0,
              "fp32": counts.get("fp32", 0) > 0 and not any(low.values())}[engine.precision]
    return Check(f"layers per precision {engine.label}", passed, {"layers": counts, "engine": engine.path.name})


def accuracy_checks(engine: Engine, fp32_onnx: Path, crops: Any, sizes: tuple[int, ...]) -> list[Check]:
    """The engine (run by the runtime's TensorRT backend) against ONNX Runtime on every face, through Polygraphy."""
    from fa3d.calibration.gate import Gate

    from .compare import backend_runner, batches_of, compare_runners, gate_compare, onnxrt_runner
    from .parity import FP16_TOLERANCE, INT8_SAME_MODEL_TOLERANCE, TRT_FP32_TOLERANCE

    feeds = batches_of(crops.inputs, sizes, source=crops.source)

    def run(name: str, reference: Path, **compare: Any) -> Check:
        try:
            res = compare_runners(onnxrt_runner(reference, f"onnxruntime {reference.name}"),
                                  backend_runner(engine.path, f"tensorrt {engine.label}"), feeds, **compare)
        except Exception as e:  # noqa: BLE001 - a self-check reports, it does not crash
            return Check(name, False, {"error": f"{type(e).__name__}: {e}"})
        return Check(name, res.passed, res.to_dict())

    if engine.precision == "int8":
        gate = Gate()
        return [run(f"accuracy {engine.label} vs ONNX Runtime on the same Q/DQ model", engine.source,
                    tolerance=INT8_SAME_MODEL_TOLERANCE.as_dict()),
                run(f"accuracy {engine.label} vs ONNX Runtime FP32: INT8 gate", fp32_onnx,
                    gate=gate_compare(gate.max_nme_deviation, gate.max_pose_deviation_deg, gate.pose_source))]
    tol = TRT_FP32_TOLERANCE if engine.precision == "fp32" else FP16_TOLERANCE
    return [run(f"accuracy {engine.label} vs ONNX Runtime FP32", fp32_onnx, tolerance=tol.as_dict())]


def clip_windows(every: int = 1, size: int = 128) -> np.ndarray:
    """The detector's input for every ``every``-th frame of the bundled clip, whole (its coarsest window):
    (N, 3, size, size), RGB scaled to [-1, 1]."""
    import cv2

    from fa3d.runtime.default_model import sample_clip_path
    from fa3d.runtime.sources import video_frames

    x = [cv2.resize(cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA)
         for f in video_frames(sample_clip_path(), every=every)]
    return (np.stack(x).astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy()


def detector_check(work: Path, options: VerifyOptions, report: VerifyReport) -> None:
    """The detector's FP16 engine (built as fa-export builds it) against its FP32 ONNX on ONNX Runtime."""
    from fa3d.runtime.detector_engine import OUTPUTS, TrtDetectorSession

    from .compare import batches_of, callable_runner, compare_runners, onnxrt_runner
    from .detector_step import DETECTOR_BATCH, FP16_TOLERANCE, build_detector_engine, write_detector_onnx
    from .trt_build import import_tensorrt

    onnx_path = write_detector_onnx(work)
    built = build_detector_engine(onnx_path, import_tensorrt().__version__, workspace_mb=1024,
                                  timing_cache=work / "timing.cache")
    x = clip_windows(options.every)
    runner = callable_runner(lambda sess, b: dict(zip(OUTPUTS, sess.run(b))), f"tensorrt {built.path.name}",
                             input_size=x.shape[-1], open_=lambda: TrtDetectorSession(built.path))
    res = compare_runners(onnxrt_runner(onnx_path), runner,
                          batches_of(x, (1, DETECTOR_BATCH.opt, DETECTOR_BATCH.max),
                                     source=f"{len(x)} frames of the bundled clip, whole"), tolerance=FP16_TOLERANCE)
    report.add(Check("detector engine vs its ONNX", res.passed, {**res.to_dict(), "build": built.note,
                                                                  "seconds": round(built.seconds, 1)}))


def timing(engines: list[Engine], report: VerifyReport, calls: int = 200, warmup: int = 20) -> None:
    """Median latency of each engine at batch 1 and at the profile's OPT batch, warm."""
    from fa3d.runtime.backends import open_backend
    from fa3d.runtime.timing import summarize_ms, time_calls

    figures = {}
    for engine in engines:
        with open_backend(engine.path) as be:
            s = be.input_size
            for b in sorted({1, int(getattr(be, "opt_batch", 1))}):
                x = np.zeros((b, 3, s, s), np.float32)
                ms = time_calls(lambda: be.infer(x), warmup=min(warmup, calls), iters=calls) * 1e3
                figures[f"{engine.label} batch {b}"] = round(summarize_ms(ms)["median_ms"], 3)
    report.add(Check("timing (median ms per call, host to host)", bool(figures), figures))


def second_thread(engines: list[Engine], report: VerifyReport) -> None:
    """Open in this thread, infer and close in another: what a camera thread does."""
    from fa3d.runtime.backends import open_backend

    engine = next((e for e in engines if e.label == "fp16"), engines[0] if engines else None)
    if engine is None:
        return
    be = open_backend(engine.path)
    errors: list[str] = []

    def work() -> None:
        try:
            be.infer(np.zeros((2, 3, be.input_size, be.input_size), np.float32))
            be.close()
        except Exception as e:  # noqa: BLE001 - reported
            errors.append(f"{type(e).__name__}: {e}")

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=120)
    report.add(Check("backend used and closed from a second thread", not errors and not t.is_alive(),
                     {"engine": engine.path.name, "errors": errors}))


def run_verify(options: VerifyOptions) -> VerifyReport:
    """Every check; the report says why nothing ran when no GPU is usable here."""
    from fa3d.runtime.metadata import read_sidecar

    from .int8_step import shipped_files
    from .parity import clip_crops

    report = VerifyReport(environment=environment())
    reason = gpu_probe()
    if reason is not None:
        report.status, report.reason = EXIT_NO_GPU, f"no GPU check possible here: {reason}"
        return report
    work = options.out
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    crops = clip_crops(read_sidecar(shipped_files()[0]).preprocess, every=options.every)
    report.environment["faces"] = crops.source
    engines = build_engines(work, options, report)
    for engine in engines:  # layers_check and accuracy_checks turn their own errors into failed checks
        report.add(layers_check(engine))
        b = options.batch
        sizes = (b.opt,) if engine.dla_core is not None else tuple(sorted({1, b.opt, b.max}))
        for check in accuracy_checks(engine, work / "model.onnx", crops, sizes):
            report.add(check)
    _guarded(report, "detector engine vs its ONNX", lambda: detector_check(work, options, report))
    if engines:
        _guarded(report, "timing (median ms per call, host to host)",
                 lambda: timing(engines, report, calls=options.timing_calls))
        _guarded(report, "backend used and closed from a second thread", lambda: second_thread(engines, report))
    report.environment["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def _guarded(report: VerifyReport, name: str, step) -> None:
    """Run a step that adds its own check; an exception becomes that check, failed (the report goes on)."""
    try:
        step()
    except Exception as e:  # noqa: BLE001 - a self-check reports, it does not crash
        report.add(Check(name, False, {"error": f"{type(e).__name__}: {e}"}))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fa-verify", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("fa3d-verify"),
                    help="folder for the engines and the report (verify.json, verify.md); default %(default)s")
    ap.add_argument("--batch", type=BatchProfile.parse, default=BatchProfile(*DEFAULT_BATCH), metavar="MIN:OPT:MAX",
                    help="the engines' batch profile; faces are checked at batch 1, OPT and MAX (default "
                         "%(default)s)")
    ap.add_argument("--dla-core", type=int, default=None, metavar="N",
                    help="Jetson with a DLA (AGX Orin, Xavier): also build and check FP16 and INT8 engines for DLA "
                         "core N (at the OPT batch: DLA engines have a static batch)")
    ap.add_argument("--every", type=int, default=1, metavar="N",
                    help="check the faces of every N-th frame of the bundled clip (default: every frame)")
    ap.add_argument("--timing-calls", type=int, default=200, metavar="N",
                    help="timed calls per engine and batch size (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of the markdown one")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = VerifyOptions(out=args.out, batch=args.batch, dla_core=args.dla_core, every=args.every,
                                timing_calls=args.timing_calls)
    except ValueError as e:
        print(f"fa-verify: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = run_verify(options)
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
