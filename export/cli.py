"""fa-export: checkpoint -> ONNX (opset 17) -> parity -> FP16 / INT8 ONNX -> TensorRT engine -> Triton."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fa3d.runtime.cli_errors import Output, artifact_files, graceful_signals, output_clash, stops_cleanly

from .defaults import DEFAULT_BATCH, DEFAULT_WORKSPACE_MB
from .steps import EXIT_CODES, EXIT_USAGE, ExportFailure, ExportRequest, Step, run_export
from .trt_build import BatchProfile

_EPILOG = "exit status:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items()) + """

output folder (--out): model.onnx, model.fp16.onnx (--fp16), model.int8.onnx + int8_report.json (--int8),
model.plan and timing.cache (when TensorRT is importable), and a JSON sidecar <file>.json for each model.

examples:
  fa-export --out export/                       # the shipped model, FP32 ONNX (+ engine on a GPU machine)
  fa-export model.pt --fp16 --batch 1:4:16      # FP16: builder flag on TRT 8.5-10.11, FP16 ONNX from 10.12
  fa-export --int8                              # the shipped model's INT8 Q/DQ ONNX (verified) + engine
  fa-export model.pt --int8 --calib frames.npz  # calibrate on your camera's frames, gate, Q/DQ ONNX
  fa-export --from-onnx export/model.onnx --fp16 --dla-core 0   # on the Jetson: build the engine there

on the GPU machine, fa-verify builds FP32/FP16/INT8 engines of the shipped model, checks them against
ONNX Runtime on every face of the bundled clip, times them and writes a report (exit 3 where there is no GPU).

"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fa-export", description=__doc__, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", type=Path,
                   help="training checkpoint (.pt); default: the model shipped inside fa3d")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: ./fa3d-export; with --from-onnx: the ONNX file's folder)")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_const", dest="precision", const="fp16",
                      help="FP16: write model.fp16.onnx (float32 I/O, parity-checked) and build with FP16: the "
                           "FP16 builder flag on TensorRT 8.5-10.11; from 10.12 (strongly typed builds) the FP16 "
                           "ONNX, converted and checked when --from-onnx finds none")
    prec.add_argument("--int8", action="store_const", dest="precision", const="int8",
                      help="INT8 (model.int8.onnx, Q/DQ) and its engine. The shipped default model has one, "
                           "calibrated and gated on labelled faces at development time: it is verified and "
                           "used. Any other model: calibrate on --calib, gate, then build")
    p.add_argument("--batch", type=BatchProfile.parse, default=BatchProfile(*DEFAULT_BATCH), metavar="MIN:OPT:MAX",
                   help="TensorRT optimisation profile over the batch (faces per inference); default %(default)s")
    p.add_argument("--workspace", type=int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                   help="TensorRT workspace limit in MiB (default %(default)s)")
    p.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="Jetson: build for DLA core N with GPU fallback (needs --fp16 or --int8; TensorRT 8.5-10.7, "
                        "or 11.4.1 on JetPack 7.2.2+; Thor has no DLA)")
    p.add_argument("--from-onnx", type=Path, default=None, metavar="FILE",
                   help="build the engine from an exported ONNX (with its sidecar) instead of a checkpoint: "
                        "export on a workstation, build on the device")
    p.add_argument("--triton", type=Path, default=None, metavar="DIR",
                   help="also write a Triton model repository entry DIR/fa3d (the engine if built, else the ONNX)")
    p.add_argument("--calib", type=Path, default=None, metavar="PATH",
                   help="--int8: your camera's faces: a fa-calib set (.npz), a folder of images, an image or a "
                        "video (faces found by the runtime's detector); required for any model but the shipped one")
    p.add_argument("--val", type=Path, default=None, metavar="PATH",
                   help="--int8: labelled validation set .npz for the accuracy gate (fa-calib on an fa-label folder); "
                        "with labels the gate measures the accuracy loss, without them the deviation from FP32; "
                        "default: every 4th face of --calib held out (deviation gate, see README)")
    p.add_argument("--calib-method", choices=("percentile", "entropy", "minmax"), default="percentile",
                   help="--int8: activation range calibration (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="--int8: write the INT8 ONNX and build the engine even when the accuracy gate fails")
    p.add_argument("--onnx-only", action="store_true", help="stop after the ONNX files (exit 0 without TensorRT)")
    p.add_argument("--parity-image", action="append", default=[], type=Path, metavar="IMAGE",
                   help="add a face image to the parity check's real crops (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (they go to stderr)")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout instead of the step log")
    p.set_defaults(precision="fp32")
    return p


def _output_problem(args) -> str | None:
    """A one-line problem with the output folders (--out, --triton), found before any work is done: each
    is created if missing and must take a file; no output may be an input file."""
    out = args.out or (args.from_onnx.parent if args.from_onnx is not None else Path("fa3d-export"))
    clash = output_clash({"--out": Output(out, "folder"),
                          "--triton": None if args.triton is None else Output(args.triton, "folder")},
                         [args.checkpoint, *artifact_files(args.from_onnx), args.calib, args.val])
    if clash:
        return clash
    for option, folder in (("--out", out), ("--triton", args.triton)):
        if folder is None:
            continue
        if folder.exists() and not folder.is_dir():
            return f"{option} {str(folder)!r} is a file; give a folder (it is created when missing)"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as e:
            return f"{option} {str(folder)!r}: cannot write there ({e.strerror or e}); give a writable folder"
    return None


@stops_cleanly("fa-export", return_usage_errors=False)
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_onnx is not None and args.checkpoint is not None:
        print("fa-export: give either a CHECKPOINT or --from-onnx, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.workspace < 1:
        print("fa-export: --workspace must be at least 1 MiB", file=sys.stderr)
        return EXIT_USAGE
    if args.dla_core is not None and args.precision == "fp32" and args.from_onnx is None:
        print("fa-export: --dla-core needs --fp16 or --int8 (the DLA runs no FP32)", file=sys.stderr)
        return EXIT_USAGE
    problem = _output_problem(args)
    if problem:
        print(f"fa-export: {problem}", file=sys.stderr)
        return EXIT_USAGE
    req = ExportRequest(out_dir=args.out, checkpoint=args.checkpoint, from_onnx=args.from_onnx,
                        precision=args.precision, batch=args.batch, workspace_mb=args.workspace,
                        dla_core=args.dla_core, triton=args.triton, calib=args.calib, val=args.val,
                        calib_method=args.calib_method,
                        force=args.force, onnx_only=args.onnx_only, parity_images=tuple(args.parity_image),
                        progress=not (args.no_progress or args.json))

    def show(step: Step) -> None:
        if not args.json:
            print(f"[{step.name}] {step.message}", flush=True)

    with graceful_signals() as guard:  # SIGTERM: the same clean stop as Ctrl-C (exit 143)
        try:
            outcome = run_export(req, show)
        except ExportFailure as e:
            if args.json:
                print(json.dumps({"status": e.status, "meaning": EXIT_CODES[e.status], "error": str(e)}))
            print(f"fa-export: {e}", file=sys.stderr)
            return e.status
        except KeyboardInterrupt as e:
            print(f"fa-export: {guard.name}; no partial files were left", file=sys.stderr)
            return guard.interrupted(e)
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    elif outcome.status:
        print(f"fa-export: exit {outcome.status}: {EXIT_CODES[outcome.status]}", file=sys.stderr)
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
