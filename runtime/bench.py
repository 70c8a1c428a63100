"""fa-bench: model-only latency/throughput per backend and batch size, and the whole pipeline on a video.

Examples::

    fa-bench --model model.onnx --int8 model.int8.onnx --batch 1,4,8 --video clip.mp4 --json bench.json
    fa-bench --engine model.plan --batch 1,8,16
    fa-bench-torch --checkpoint model.pt --model model.onnx   # PyTorch too (fa3d.training.bench_torch)

Model-only: random inputs of the artifact's input size, ``--warmup`` untimed calls then ``--iters`` timed
calls per batch size; reported per row: median, p10 and p90 latency (ms per call) and throughput
(faces/s = batch / median). Pipeline (``--video``, default: the bundled sample clip, when a model is
given): fa-run's loop with tracking on (``--no-track`` to turn it off), no drawing or writing, stage by
stage (decode, detect, preprocess, infer, postprocess) with median/p10/p90 ms and end-to-end fps; the
first ``--warmup`` frames are run once before the timed pass.

Text output::

    backend       precision  batch  median_ms   p10_ms   p90_ms   faces/s
    onnxruntime   fp32           1       3.10     3.02     3.40     322.6
    ...
    pipeline: <video> (<W>x<H>, tracking on, backend onnxruntime fp32)
    frames 90 (...), wall 2.31 s, 39.0 fps
    stage        median ms      p10      p90     mean
    ...

``--json OUT``: ``{"machine": {...}, "model": [rows as above], "pipeline": <summary> | null}``.

Exit codes: 0 done, 2 usage (also --json naming an input, a model's sidecar or a folder; an unknown --detector),
3 video not found, 4 model or --detector file cannot be loaded, 5 --json cannot be written (disk full,
permission), 129 hung up (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).

PyTorch rows (``--checkpoint``) come from ``fa-bench-torch``, the same command with a PyTorch timer plugged in
(:mod:`fa3d.training.bench_torch`): the runtime never imports torch or the training package, so plain
``fa-bench --checkpoint`` says where to go (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .aligner import FaceAligner, FaceAlignerOptions, RunningMode
from .atomic import atomic_write_text
from .backends import BackendError, open_backend
from .cli_errors import (EXIT_OUTPUT, EXIT_USAGE, artifact_files, check_outputs_not_inputs, exit_codes_help,
                         int_at_least, os_error_text, stops_cleanly)
from .clihelp import HelpFormatter
from .detector_engine import DetectorArtifactError, pipeline_detector
from .default_model import DefaultModelMissing, default_model_path, sample_clip_path
from .detectors import DetectorError
from .detectors.registry import DETECTOR_HELP
from .frame_loop import run_pipeline
from .lazy import MissingDependency, lazy_import
from .metadata import MetadataError
from .policy import DEFAULT_DET_EVERY, DEFAULT_DETECTOR, DEFAULT_MAX_FACES, MAX_FACES_PER_CALL
from .sources import SourceError, open_source
from .timing import summarize_ms, time_calls

ort = lazy_import("onnxruntime")

#: ``(checkpoint, batches, warmup, iters, threads) -> rows``: times a checkpoint (PyTorch); raises RuntimeError
CheckpointTimer = Callable[[str, list[int], int, int, "int | None"], list[dict]]


#: the largest --batch: one call's input (B x 3 x S x S float32) stays below ~1 GB for S = 256
MAX_BENCH_BATCH = 1024


def _parse_batches(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch needs integers separated by commas, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"--batch needs positive integers, got {text!r}")
    if max(vals) > MAX_BENCH_BATCH:
        raise argparse.ArgumentTypeError(f"--batch sizes are at most {MAX_BENCH_BATCH} (the input of one call is "
                                         f"held in memory), got {max(vals)}")
    return vals


def build_parser(prog: str = "fa-bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog=exit_codes_help(__doc__), formatter_class=HelpFormatter)
    p.add_argument("--model", help="FP32 (or FP16) ONNX model, run by ONNX Runtime (default, when no model of "
                                   "any kind is given: the model shipped inside fa3d)")
    p.add_argument("--int8", help="INT8 Q/DQ ONNX model, run by ONNX Runtime")
    p.add_argument("--engine", help="TensorRT engine (.plan), run by TensorRT + pycuda")
    p.add_argument("--checkpoint", help="PyTorch checkpoint (.pt), run by PyTorch on CPU: fa-bench-torch only "
                                        "(needs fa3d[train])")
    p.add_argument("--batch", type=_parse_batches, default=[1, 4, 8], help="batch sizes, comma-separated")
    p.add_argument("--warmup", type=int_at_least(0), default=5, help="untimed calls (and pipeline frames) first")
    p.add_argument("--iters", type=int_at_least(1), default=30, help="timed calls per batch size")
    p.add_argument("--threads", type=int_at_least(1), help="CPU threads for ONNX Runtime / PyTorch (default: library's choice)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "tensorrt", "auto"],
                   help="ONNX Runtime execution provider")
    p.add_argument("--video", help="video for the pipeline benchmark (default: the bundled sample clip)")
    p.add_argument("--no-pipeline", action="store_true", help="model-only figures")
    p.add_argument("--no-track", action="store_true", help="pipeline: detect on every frame")
    p.add_argument("--max-frames", type=int_at_least(1), help="pipeline: at most this many frames")
    p.add_argument("--max-faces", type=int_at_least(1, MAX_FACES_PER_CALL), default=DEFAULT_MAX_FACES, help="pipeline: track at most this many faces")
    p.add_argument("--det-every", type=int_at_least(1), default=DEFAULT_DET_EVERY,
                   help="pipeline: look for new faces over the whole frame at least every N frames")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"pipeline: face detector: {DETECTOR_HELP}")
    p.add_argument("--detector-engine", metavar="PLAN",
                   help="pipeline: BlazeFace's TensorRT engine (default: blazeface_short_range.plan beside --engine "
                        "when it is there, else ONNX Runtime on the CPU); the stage table names where it ran")
    p.add_argument("--json", dest="json_out", help="write all figures as JSON (atomically)")
    return p


def row(backend: str, precision: str, batch: int, t: np.ndarray) -> dict:
    st = summarize_ms(t * 1000.0)
    med = st["median_ms"]
    return {"backend": backend, "precision": precision, "batch": batch, "median_ms": round(med, 3),
            "p10_ms": round(st["p10_ms"], 3), "p90_ms": round(st["p90_ms"], 3),
            "faces_per_s": round(batch * 1000.0 / med, 1) if med > 0 else None, "iters": len(t)}


def bench_backend(backend, batches: list[int], warmup: int, iters: int, label: str) -> list[dict]:
    s = backend.metadata.preprocess.input_size
    rng = np.random.default_rng(0)
    rows = []
    for b in batches:
        x = rng.standard_normal((b, 3, s, s)).astype(np.float32)
        rows.append(row(label, backend.metadata.precision, b, time_calls(lambda: backend.infer(x), warmup, iters)))
    return rows


def machine_info() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}
    with contextlib.suppress(MissingDependency):
        info["onnxruntime"] = ort.__version__
    info["opencv"] = cv2.__version__
    return info


def _print_rows(rows: list[dict]) -> None:
    print(f"{'backend':<14}{'precision':<10}{'batch':>6}{'median_ms':>11}{'p10_ms':>9}{'p90_ms':>9}{'faces/s':>10}")
    for r in rows:
        print(f"{r['backend']:<14}{r['precision']:<10}{r['batch']:>6}{r['median_ms']:>11.2f}{r['p10_ms']:>9.2f}"
              f"{r['p90_ms']:>9.2f}{r['faces_per_s']:>10.1f}")


@stops_cleanly("fa-bench")
def main(argv: list[str] | None = None, checkpoint_timer: CheckpointTimer | None = None,
         prog: str = "fa-bench") -> int:
    """fa-bench; ``checkpoint_timer`` (given by fa-bench-torch) times ``--checkpoint`` files."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    default_files = _shipped_inputs(args)
    if not check_outputs_not_inputs(prog, {"--json": args.json_out},
                                    [*artifact_files(args.model), *artifact_files(args.int8),
                                     *artifact_files(args.engine), args.checkpoint, args.video, *default_files]):
        return EXIT_USAGE
    if args.checkpoint and checkpoint_timer is None:
        print("fa-bench: error: --checkpoint times PyTorch, which the runtime never imports: run the same command "
              "as fa-bench-torch (needs fa3d[train])", file=sys.stderr)
        return 2
    if not (args.model or args.int8 or args.engine or args.checkpoint):
        try:
            args.model = str(default_model_path())
        except DefaultModelMissing as e:
            print(f"fa-bench: error: {e}", file=sys.stderr)
            return 4
    if args.warmup < 0 or args.iters < 1:
        print("fa-bench: error: --warmup must be >= 0 and --iters >= 1", file=sys.stderr)
        return 2

    rows: list[dict] = []
    pipeline = None
    try:
        for path, label in ((args.model, "onnxruntime"), (args.int8, "onnxruntime"), (args.engine, "tensorrt")):
            if path:
                with open_backend(path, device=args.device, num_threads=args.threads) as be:
                    rows += bench_backend(be, args.batch, args.warmup, args.iters, label)
        if args.checkpoint:
            rows += checkpoint_timer(args.checkpoint, args.batch, args.warmup, args.iters, args.threads)
    except (MetadataError, BackendError, FileNotFoundError, RuntimeError) as e:
        print(f"fa-bench: error: {e}", file=sys.stderr)
        return 4
    _print_rows(rows)

    pipe_model = args.engine or args.model or args.int8
    if pipe_model and not args.no_pipeline:
        code, pipeline = _bench_pipeline(args, pipe_model)
        if code:
            return code

    if args.json_out:
        try:
            atomic_write_text(args.json_out, json.dumps({"machine": machine_info(), "model": rows,
                                                         "pipeline": pipeline}, indent=2) + "\n")
        except OSError as e:
            print(f"{prog}: error: cannot write --json: {os_error_text(e)}", file=sys.stderr)
            return EXIT_OUTPUT
    return 0


def _shipped_inputs(args) -> list:
    """The shipped files this run reads: the default model and its sidecar (no model named), the sample clip
    (no --video)."""
    files: list = []
    try:
        if not (args.model or args.int8 or args.engine or args.checkpoint):
            files += artifact_files(default_model_path())
        if not args.video:
            files.append(sample_clip_path())
    except DefaultModelMissing:
        pass
    return files


def _bench_pipeline(args, model: str) -> tuple[int, dict | None]:
    try:
        video = args.video or str(sample_clip_path())
        mode = RunningMode.IMAGE if args.no_track else RunningMode.VIDEO
        options = FaceAlignerOptions(device=args.device, num_threads=args.threads, mode=mode,
                                     max_faces=args.max_faces, det_every_n=args.det_every, detector=args.detector)
        with contextlib.ExitStack() as stack:
            det = pipeline_detector(model, args.detector, args.detector_engine, stack)
            aligner = stack.enter_context(FaceAligner.from_artifact(model, options, det.detector))
            try:
                aligner.detector  # load it now: a bad --detector is reported before any timing
            except ValueError as e:  # an unknown --detector name
                print(f"fa-bench: error: --detector: {e}", file=sys.stderr)
                return EXIT_USAGE, None
            if args.warmup:
                with open_source(video) as src:
                    run_pipeline(aligner, src, track=not args.no_track, max_frames=args.warmup)
                aligner.reset()
            with open_source(video) as src:
                report = run_pipeline(aligner, src, track=not args.no_track, max_frames=args.max_frames)
    except (SourceError, DefaultModelMissing) as e:
        print(f"fa-bench: error: {e}", file=sys.stderr)
        return 3, None
    except DetectorError as e:  # a --detector file missing, corrupt or not the network it says
        print(f"fa-bench: error: --detector: {e}", file=sys.stderr)
        return 4, None
    except (DetectorArtifactError, BackendError, MetadataError) as e:  # the detector's engine
        print(f"fa-bench: error: {e}", file=sys.stderr)
        return 4, None
    summary = report.summary()
    summary.update({"video": str(video), "tracking": not args.no_track, "model": str(model),
                    "max_faces": args.max_faces, "det_every_n": args.det_every, "detector": args.detector,
                    "backend": aligner.backend.name, "precision": aligner.backend.metadata.precision,
                    "detector_backend": det.backend})
    print(f"\npipeline: {Path(video).name} (tracking {'off' if args.no_track else 'on'}, backend "
          f"{aligner.backend.name} {aligner.backend.metadata.precision}, detector {det.description})")
    print(report.format_table({"detect": f"detect ({det.backend})"}))
    return 0, summary


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
