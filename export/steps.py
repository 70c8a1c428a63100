"""The fa-export steps in order, as a library: checkpoint -> ONNX -> parity -> precision -> engine -> Triton.

:func:`run_export` calls ``report(step)`` after every step (the CLI prints them) and returns an
:class:`ExportOutcome` whose ``status`` is the CLI's exit code (see :data:`EXIT_CODES`). Failures of a
step raise :class:`ExportFailure` carrying the exit code and the step's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fa3d.runtime.lazy import available
from fa3d.runtime.metadata import MetadataError, read_sidecar, sha256_file

from .defaults import ENGINE_NAME, FP16_ONNX_NAME, INT8_ONNX_NAME, INT8_REPORT_NAME, ONNX_NAME, TIMING_CACHE_NAME
from .trt_build import BatchProfile, BuildOptions, EngineBuildError, TensorRTUnavailable

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments, missing or invalid input files
EXIT_NO_TENSORRT = 3  # every ONNX written and checked; no TensorRT here: run the printed commands on the target
EXIT_CHECK_FAILED = 4  # an ONNX check or a parity check failed
EXIT_GATE_FAILED = 5  # the INT8 accuracy gate failed (no engine built; --force overrides)
EXIT_BUILD_FAILED = 6  # TensorRT could not parse the ONNX or build the engine
EXIT_NEEDS_TORCH = 7  # exporting a checkpoint needs PyTorch, which is not installed
EXIT_CODES = {
    EXIT_OK: "done: every requested artifact written",
    EXIT_USAGE: "bad arguments, or a missing or invalid input file",
    EXIT_NO_TENSORRT: "ONNX files written and checked, but TensorRT cannot be imported here: no engine; "
                      "run the printed command on the target machine",
    EXIT_CHECK_FAILED: "an ONNX check failed (unreadable file, outputs that do not match the sidecar, checker, "
                       "TensorRT-safe operators, Q/DQ lint, INT8 file made from another model) or a parity check",
    EXIT_GATE_FAILED: "the INT8 accuracy gate failed: no engine built (--force builds it anyway)",
    EXIT_BUILD_FAILED: "TensorRT could not parse the ONNX or build the engine",
    EXIT_NEEDS_TORCH: "exporting a checkpoint needs PyTorch (pip install 'fa3d[train]'); the shipped default "
                      "model's ONNX and INT8 files need none (fa-export, fa-export --int8)",
}


class ExportFailure(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ExportRequest:
    out_dir: Path | None = None  # None: beside --from-onnx, else ./fa3d-export
    checkpoint: Path | None = None  # None (and no from_onnx): the shipped default model
    from_onnx: Path | None = None
    precision: str = "fp32"
    batch: BatchProfile = BuildOptions().batch
    workspace_mb: int = BuildOptions().workspace_mb
    dla_core: int | None = None
    triton: Path | None = None
    calib: Path | None = None
    val: Path | None = None  # --int8: (labelled) validation set for the gate
    calib_method: str = "percentile"
    force: bool = False
    onnx_only: bool = False
    progress: bool = True  # progress bars on the long steps (calibration, gate)
    parity_images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Step:
    name: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportOutcome:
    status: int = EXIT_OK
    steps: list[Step] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    target_commands: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "meaning": EXIT_CODES[self.status],
                "steps": [{"name": s.name, "message": s.message, **({"details": s.details} if s.details else {})}
                          for s in self.steps],
                "files": dict(self.files), "target_commands": list(self.target_commands)}


Report = Callable[[Step], None]


def _add(outcome: ExportOutcome, report: Report, step: Step) -> None:
    outcome.steps.append(step)
    report(step)


def _meta_precision(path: Path) -> str:
    try:
        meta = read_sidecar(path)
    except MetadataError as e:
        raise ExportFailure(EXIT_USAGE, str(e)) from None
    if meta.format != "onnx":
        raise ExportFailure(EXIT_USAGE, f"{path}: its sidecar says format {meta.format!r}, not an ONNX export")
    return meta.precision


def _sibling(src: Path, name: str, precision: str) -> Path | None:
    p = src.parent / name
    if p.is_file():
        try:
            if read_sidecar(p).precision == precision:
                return p
        except MetadataError:
            return None
    return None


def choose_build_source(src: Path, precision: str, trt_version: Any, report: Callable[[str], None],
                        parity_images: tuple[Path, ...] = ()) -> tuple[Path, str]:
    """Which ONNX to build from and the engine's precision, for the installed TensorRT version.

    An FP16 or Q/DQ ONNX decides the precision itself. ``--fp16`` from an FP32 ONNX uses the FP16
    builder flag before TensorRT 10.12 and the FP16 ONNX from 10.12 on (strongly typed builds): the one
    beside it, or one converted now and parity-checked like ``fa-export --fp16`` does.
    """
    from packaging.version import Version

    from .trt_build import FIRST_STRONGLY_TYPED

    src_p = _meta_precision(src)
    if src_p != "fp32":
        if precision not in ("fp32", src_p):
            raise ExportFailure(EXIT_USAGE, f"{src} is a {src_p} ONNX; it cannot become a {precision} engine")
        return src, src_p
    if precision == "int8":
        sib = _sibling(src, INT8_ONNX_NAME, "int8")
        if sib is None:
            raise ExportFailure(EXIT_USAGE, f"an INT8 engine needs the Q/DQ ONNX: {src.parent / INT8_ONNX_NAME} is "
                                "missing; make it with fa-export --int8 (it calibrates), then build from it")
        return sib, "int8"
    if precision == "fp16" and Version(str(trt_version)) >= FIRST_STRONGLY_TYPED:
        sib = _sibling(src, FP16_ONNX_NAME, "fp16")
        if sib is None:
            step = make_fp16_checked(src, parity_images)
            report(f"TensorRT {trt_version} needs an FP16 ONNX: {step.message}")
            sib = src.parent / FP16_ONNX_NAME
        return sib, "fp16"
    return src, precision


def make_fp16_checked(onnx_path: Path, parity_images: tuple[Path, ...] = ()) -> Step:
    """``model.fp16.onnx`` beside the FP32 ``onnx_path``, then FP32 vs FP16 parity on face crops (Polygraphy);
    raises :class:`ExportFailure` (exit 4) when a check or the parity fails."""
    from .fp16 import make_fp16
    from .onnx_export import OnnxExportError
    from .parity import FP16_TOLERANCE, onnx_vs_onnx, parity_crops

    try:
        res = make_fp16(onnx_path, onnx_path.parent / FP16_ONNX_NAME)
    except OnnxExportError as e:
        raise ExportFailure(EXIT_CHECK_FAILED, str(e)) from None
    crops = parity_crops(read_sidecar(onnx_path).preprocess, parity_images, synthetic_fallback=True)
    rep = onnx_vs_onnx(onnx_path, res.path, crops, FP16_TOLERANCE)
    step = Step("fp16", f"wrote {res.path} (float16 weights and activations, float32 input and outputs, {res.casts} "
                f"Cast nodes); checks passed; " + ("parity passed: " if rep.passed else "parity FAILED: ")
                + rep.summary(), rep.to_dict())
    if not rep.passed:
        raise ExportFailure(EXIT_CHECK_FAILED, step.message + f"\nFP16 ONNX outside tolerance: {rep.failures}")
    return step


def _export_from_checkpoint(req: ExportRequest, out_dir: Path, outcome: ExportOutcome, report: Report) -> Path:
    from .defaults import default_checkpoint_path

    from .onnx_export import OnnxExportError, export_onnx
    from .parity import FP32_TOLERANCE, parity_crops, torch_vs_onnx

    try:
        ckpt = Path(req.checkpoint) if req.checkpoint is not None else default_checkpoint_path()
    except FileNotFoundError as e:
        raise ExportFailure(EXIT_USAGE, str(e)) from None
    if not ckpt.is_file():
        raise ExportFailure(EXIT_USAGE, f"{ckpt}: checkpoint not found")
    from fa3d.training.checkpoint import CheckpointError, load_checkpoint

    try:
        loaded = load_checkpoint(ckpt)
    except (CheckpointError, MetadataError, OSError) as e:
        raise ExportFailure(EXIT_USAGE, f"{ckpt}: cannot load the checkpoint: {e}") from None
    meta = loaded.metadata.with_(source_sha256=sha256_file(ckpt))
    onnx_path = out_dir / ONNX_NAME
    try:
        res = export_onnx(loaded.model, onnx_path, meta)
    except OnnxExportError as e:
        raise ExportFailure(EXIT_CHECK_FAILED, str(e)) from None
    outcome.files["onnx"] = str(res.path)
    _add(outcome, report, Step("onnx", f"wrote {res.path} (opset {res.opset}, dynamic batch, {res.nodes} nodes after "
                               f"folding/cleanup of {res.nodes_exported}); onnx.checker and TensorRT-safe operator "
                               f"check passed; sidecar {res.sidecar.name}",
                               {"ops": list(res.ops), "sha256": res.sha256, "checkpoint": str(ckpt)}))
    try:
        crops = parity_crops(meta.preprocess, req.parity_images, synthetic_fallback=True)
    except FileNotFoundError as e:
        raise ExportFailure(EXIT_USAGE, str(e)) from None
    rep = torch_vs_onnx(loaded.model, onnx_path, crops, FP32_TOLERANCE)
    _add(outcome, report, Step("parity", ("passed: " if rep.passed else "FAILED: ") + rep.summary(), rep.to_dict()))
    if not rep.passed:
        raise ExportFailure(EXIT_CHECK_FAILED, f"PyTorch vs ONNX Runtime parity failed: {rep.failures}")
    return onnx_path


def _precision_variant(req: ExportRequest, onnx_path: Path, outcome: ExportOutcome, report: Report) -> None:
    """``--fp16``: the FP16 ONNX with its parity check; ``--int8``: the INT8 step (:mod:`.int8_step`)."""
    if req.precision == "fp16" and _meta_precision(onnx_path) == "fp32":
        step = make_fp16_checked(onnx_path, req.parity_images)
        outcome.files["fp16_onnx"] = str(onnx_path.parent / FP16_ONNX_NAME)
        _add(outcome, report, step)
    elif req.precision == "int8" and _meta_precision(onnx_path) == "fp32":
        _int8_step(req, onnx_path, outcome, report)


_INT8_EXIT = {"usage": EXIT_USAGE, "check": EXIT_CHECK_FAILED, "gate": EXIT_GATE_FAILED}


def _int8_step(req: ExportRequest, onnx_path: Path, outcome: ExportOutcome, report: Report) -> None:
    """Make or verify model.int8.onnx beside the FP32 ``onnx_path`` (see :mod:`.int8_step`)."""
    from .int8_step import Int8StepError, int8_for

    try:
        message, passed = int8_for(onnx_path, calib=req.calib, val=req.val, method=req.calib_method,
                                   force=req.force, progress=req.progress)
    except Int8StepError as e:
        if (onnx_path.parent / INT8_REPORT_NAME).is_file():
            outcome.files["int8_report"] = str(onnx_path.parent / INT8_REPORT_NAME)
        raise ExportFailure(_INT8_EXIT[e.kind], str(e)) from None
    outcome.files["int8_onnx"] = str(onnx_path.parent / INT8_ONNX_NAME)
    if (onnx_path.parent / INT8_REPORT_NAME).is_file() and req.calib is not None:
        outcome.files["int8_report"] = str(onnx_path.parent / INT8_REPORT_NAME)
    _add(outcome, report, Step("int8", message, {"passed": passed}))


FP32_SOURCES = ("onnx file", "checkpoint", "shipped onnx")


def fp32_source(req: ExportRequest) -> str:
    """Where the FP32 ONNX comes from, decided in one place (one of :data:`FP32_SOURCES`):

    * ``--from-onnx``: that file (checked where it is);
    * a checkpoint given, or the shipped default checkpoint when PyTorch is here: exported now, parity-checked;
    * the shipped default model's ONNX (exported and parity-checked when it was shipped): without PyTorch, and
      for ``--int8`` without ``--calib``, whose shipped INT8 file was made from that very ONNX.
    """
    if req.from_onnx is not None:
        return "onnx file"
    torch_here = available("torch")
    if req.checkpoint is not None:
        if not torch_here:
            raise ExportFailure(EXIT_NEEDS_TORCH, f"exporting {req.checkpoint} needs PyTorch, which is not installed "
                                "here: pip install 'fa3d[train]' (or export on a machine with it and use "
                                "fa-export --from-onnx model.onnx here)")
        return "checkpoint"
    if req.precision == "int8" and req.calib is None:
        return "shipped onnx"
    return "checkpoint" if torch_here else "shipped onnx"


def _copy_shipped_onnx(out_dir: Path, outcome: ExportOutcome, report: Report, why: str) -> Path:
    from .int8_step import copy_model, shipped_files

    fp32 = shipped_files()[0]
    if not fp32.is_file():
        raise ExportFailure(EXIT_NEEDS_TORCH, "this installation has no shipped default ONNX: export a checkpoint "
                            "(pip install 'fa3d[train]') or give --from-onnx")
    copy_model(fp32, out_dir / ONNX_NAME)
    outcome.files["onnx"] = str(out_dir / ONNX_NAME)
    _add(outcome, report, Step("onnx", f"{why}: copied the default model's shipped ONNX (exported and parity-checked "
                               f"when it was shipped) to {out_dir / ONNX_NAME}"))
    return out_dir / ONNX_NAME


def _engine(req: ExportRequest, src: Path, out_dir: Path, outcome: ExportOutcome, report: Report) -> Path | None:
    from .trt_build import build_batch, build_engine, import_tensorrt

    if req.onnx_only:
        _add(outcome, report, Step("engine", "skipped (--onnx-only)"))
        return None
    try:
        trt = import_tensorrt()
    except TensorRTUnavailable as e:
        from .target_commands import from_onnx_command, trtexec_commands

        size = read_sidecar(src).preprocess.input_size
        build_src = out_dir / INT8_ONNX_NAME if req.precision == "int8" and src.name == ONNX_NAME else src
        cmds = [{"label": "fa-export (any TensorRT 8.5 to 11.x)",
                 "command": from_onnx_command(build_src, req.precision, req.batch, req.workspace_mb, req.dla_core)}]
        static = build_batch(BuildOptions(batch=req.batch, dla_core=req.dla_core))  # DLA: static shapes
        cmds += [{"label": c.label, "command": c.command} for c in
                 trtexec_commands(out_dir, size, req.precision, static, req.workspace_mb, req.dla_core,
                                  fp16_only=_meta_precision(src) == "fp16")]
        outcome.target_commands = cmds
        outcome.status = EXIT_NO_TENSORRT
        _add(outcome, report, Step("engine", f"not built: {e}. Copy {out_dir} to the target machine and run there:\n"
                                   + "\n".join(f"  # {c['label']}\n  {c['command']}" for c in cmds)))
        return None
    notes: list[str] = []
    source, precision = choose_build_source(src, req.precision, trt.__version__, notes.append, req.parity_images)
    options = BuildOptions(precision=precision, batch=req.batch, workspace_mb=req.workspace_mb,
                           dla_core=req.dla_core, timing_cache=out_dir / TIMING_CACHE_NAME)
    try:
        res = build_engine(source, out_dir / ENGINE_NAME, options)
    except EngineBuildError as e:
        raise ExportFailure(EXIT_BUILD_FAILED, str(e)) from None
    outcome.files["engine"] = str(res.path)
    outcome.files["timing_cache"] = str(res.timing_cache)
    _add(outcome, report, Step("engine", " ".join(notes + [
        f"built {res.path} ({res.size_bytes / 1e6:.1f} MB, {res.seconds:.0f} s) with TensorRT "
        f"{res.plan.tensorrt_version} from {source.name}: {precision}, batch {build_batch(options)}"
        + (" (static: the DLA needs it)" if req.dla_core is not None else "") + ", workspace "
        f"{req.workspace_mb} MiB, flags {list(res.plan.builder_flags) or 'none'}"
        + (", strongly typed" if res.plan.strongly_typed else "")
        + (f", DLA core {req.dla_core} with GPU fallback" if req.dla_core is not None else "")
        + f"; timing cache {'reused' if res.timing_cache_reused else 'created'} ({res.timing_cache.name}); "
        f"sidecar {res.sidecar.name}"]), res.plan.to_dict()))
    return res.path


def _detector_onnx(out_dir: Path, outcome: ExportOutcome, report: Report) -> Path:
    """The face detector's network (the shipped BlazeFace) and its sidecar beside the model."""
    from .detector_step import DetectorStepError, write_detector_onnx

    try:
        path = write_detector_onnx(out_dir)
    except (DetectorStepError, OSError) as e:
        raise ExportFailure(EXIT_CHECK_FAILED, f"detector: {e}") from None
    outcome.files["detector_onnx"] = str(path)
    _add(outcome, report, Step("detector", f"wrote {path} (the face detector's network, BlazeFace short range; "
                               "fa-run runs it on ONNX Runtime unless its engine is beside the model's)"))
    return path


def _detector_engine(req: ExportRequest, detector_onnx: Path, outcome: ExportOutcome, report: Report) -> None:
    """The detector's FP16 engine beside the model's (TensorRT is importable here: the model's was just built)."""
    from .detector_step import DETECTOR_BATCH, DetectorStepError, build_detector_engine
    from .trt_build import import_tensorrt

    try:
        res = build_detector_engine(detector_onnx, import_tensorrt().__version__, workspace_mb=req.workspace_mb,
                                    timing_cache=detector_onnx.parent / TIMING_CACHE_NAME)
    except EngineBuildError as e:
        raise ExportFailure(EXIT_BUILD_FAILED, f"detector engine: {e}") from None
    except (DetectorStepError, OSError) as e:
        raise ExportFailure(EXIT_CHECK_FAILED, f"detector engine: {e}") from None
    outcome.files["detector_engine"] = str(res.path)
    _add(outcome, report, Step("detector engine", f"built {res.path} (FP16, {res.note}, batch "
                               f"{DETECTOR_BATCH}, {res.seconds:.0f} s); fa-run --engine "
                               "finds it beside the model's engine"))


def _variant_path(onnx_path: Path, precision: str) -> Path:
    name = {"fp16": FP16_ONNX_NAME, "int8": INT8_ONNX_NAME}.get(precision)
    if name is None or _meta_precision(onnx_path) != "fp32":
        return onnx_path
    p = onnx_path.parent / name
    return p if p.is_file() else onnx_path


def run_export(req: ExportRequest, report: Report = lambda step: None) -> ExportOutcome:
    """Run every requested step; raises :class:`ExportFailure` (with its exit code) when one fails."""
    outcome = ExportOutcome()
    if req.precision not in ("fp32", "fp16", "int8"):
        raise ExportFailure(EXIT_USAGE, f"precision must be fp32, fp16 or int8, got {req.precision!r}")
    source = fp32_source(req)
    if source == "onnx file":
        onnx_path = Path(req.from_onnx)
        if not onnx_path.is_file():
            raise ExportFailure(EXIT_USAGE, f"{onnx_path}: ONNX file not found")
        src_p = _meta_precision(onnx_path)
        out_dir = Path(req.out_dir) if req.out_dir is not None else onnx_path.parent
        if out_dir.resolve() != onnx_path.parent.resolve():
            raise ExportFailure(EXIT_USAGE, f"--from-onnx builds beside its ONNX ({onnx_path.parent}); copy the "
                                "export folder there instead of giving a different --out")
        _check_existing_onnx(onnx_path, outcome, report)
        if src_p != "fp32" and req.precision == "fp32":
            req = replace(req, precision=src_p)
        if req.precision == "int8":  # the FP16 ONNX of --fp16 is made when the TensorRT version needs it
            _precision_variant(req, onnx_path, outcome, report)
    else:
        out_dir = Path(req.out_dir) if req.out_dir is not None else Path("fa3d-export")
        out_dir.mkdir(parents=True, exist_ok=True)
        if source == "checkpoint":
            onnx_path = _export_from_checkpoint(req, out_dir, outcome, report)
        else:
            why = ("--int8 without --calib: the shipped INT8 file belongs to it" if req.precision == "int8"
                   else "PyTorch is not installed")
            onnx_path = _copy_shipped_onnx(out_dir, outcome, report, why)
        _precision_variant(req, onnx_path, outcome, report)
    detector_onnx = _detector_onnx(out_dir, outcome, report)
    engine = _engine(req, onnx_path, out_dir, outcome, report)
    if engine is not None:
        _detector_engine(req, detector_onnx, outcome, report)
    if req.triton is not None:
        from .triton import write_triton_repo

        artifact = engine if engine is not None else _variant_path(onnx_path, req.precision)
        try:
            res = write_triton_repo(req.triton, artifact, max_batch=req.batch.max, preferred=(req.batch.opt,))
        except (ValueError, MetadataError) as e:
            raise ExportFailure(EXIT_USAGE, f"--triton: {e}") from None
        outcome.files["triton"] = str(res.model_dir)
        _add(outcome, report, Step("triton", f"wrote {res.model_dir} ({res.platform}, max_batch_size "
                                   f"{req.batch.max}, dynamic batching, {res.artifact.relative_to(res.model_dir)})"))
    return outcome


def _check_existing_onnx(src: Path, outcome: ExportOutcome, report: Report) -> None:
    """ORT load + sidecar match, then onnx.checker + the TensorRT-safe check (skipped, and said so, without onnx)."""
    from .onnx_io import OnnxFileError, check_onnx_file

    try:
        check_onnx_file(src, read_sidecar(src))
    except (OnnxFileError, MetadataError) as e:
        raise ExportFailure(EXIT_CHECK_FAILED, str(e)) from None
    try:
        import onnx
    except ImportError:
        _add(outcome, report, Step("check", f"{src}: onnx is not installed here, ONNX checks skipped "
                                   "(pip install 'fa3d[export]' to run them)"))
        return
    from .onnx_export import OnnxExportError, check_onnx

    try:
        check_onnx(onnx.load(str(src)), where=str(src))
    except OnnxExportError as e:
        raise ExportFailure(EXIT_CHECK_FAILED, str(e)) from None
    extra = ""
    if _meta_precision(src) == "int8":
        from fa3d.calibration.lint import QdqLintError, lint_qdq

        try:
            lint_qdq(src)
        except QdqLintError as e:
            raise ExportFailure(EXIT_CHECK_FAILED, f"{src}: Q/DQ lint failed: {e}") from None
        extra = ", Q/DQ lint"
    _add(outcome, report, Step("check", f"{src}: onnx.checker{extra} and TensorRT-safe operator check passed "
                               f"({_meta_precision(src)})"))

