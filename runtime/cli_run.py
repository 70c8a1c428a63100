"""fa-run: 3D face alignment on a camera, a video, images, a stream or a ROS bag, with tracking.

Examples::

    fa-run --engine model.plan --camera 0
    fa-run --model model.onnx --source clip.mp4 --output out.mp4 --json out.jsonl --headless
    fa-run                       # the shipped default model on CPU, on the bundled sample clip
    fa-run --source in_bag --topic /camera/image_raw --out-bag out_bag --headless   # ROS 2: docs/ros2.md

Without a model argument the shipped default model runs on CPU; without a source the bundled sample clip.

JSON lines (``--json FILE``): one record per processed frame (per image for images and folders), in
order, each written and flushed as a whole line as soon as its frame is done (``tail -f`` works; a crash
never leaves half a line)::

    {"schema_version": 2,           # this record layout (fa3d.runtime.outputs.RECORD_SCHEMA_VERSION)
     "frame": 0,                    # index in the source (frames that failed to decode keep their index)
     "timestamp_ms": 0.0,           # container time for files, time since opening for live sources
     "width": 1280, "height": 720,  # the size of the processed image, pixels
     "file": "img_001.jpg",         # images and folders only: the image's file name
     "faces": [                     # faces with confidence >= --min-confidence, [] when none
       {"track_id": 0,              # stable ID while the face is tracked (null with --no-track and for images)
        "box": [x1, y1, x2, y2],    # the tight face box the crop was made from, 0-based pixels
        "confidence": 0.97,         # face probability in [0, 1]
        "yaw_pitch_roll": [y, p, r],# degrees, see the README ("Output") for the signs
        "rotation": [[...], [...], [...]],    # 3x3, same convention
        "landmarks": [[x, y, z], ...],        # 68 iBUG points, 0-based pixels, z: larger = nearer
        "dense": [[x, y, z], ...],            # only with --dense
        "head_pose_cam": {"rvec": [..], "tvec_m": [..]}   # only with --intrinsics or --fov: OpenCV
       }]}                                                 # camera frame, metres (solvePnP convention)

Coordinates are rounded to 0.01 px, in the pixels of the image as read (never resized). ``--output`` may be
a video (.mp4, .avi, .mkv; written under a temporary name and renamed at the end), an image (.png, .jpg:
for a single image) or a folder (one annotated PNG per frame; an image keeps its whole name plus ``.png``:
``face.jpg`` -> ``face.jpg.png``, so ``face.jpg`` and ``face.png`` never collide). Every output is checked
before any work: a folder where a file is wanted, an output that names an input (the model's sidecar
included) or another output, an annotation that would overwrite a source image, an output folder that is
the source folder: one line, exit 2. A device or FIFO (``--json /dev/null``, a pipe) is written in place and
never removed. On Ctrl-C, SIGTERM or SIGHUP the run stops, the outputs written so far are kept as valid,
shorter files, the timings are printed and the exit code is 130, 143 or 129. On any error the video and the
JSON lines are removed (images already written to an output folder stay).

Exit codes: 0 done; 2 usage error (also an output refused before the run, see above; bad --intrinsics; a bag
with several image topics and no --topic, --out-bag exists, the fa3d[ros] extra missing); 3 source not found /
cannot be opened / nothing decodable (also: a corrupt or truncated bag, no such --topic, an image encoding fa3d
does not read, no CameraInfo on the --camera-info topic); 4 model or sidecar missing, invalid or incompatible
(wrong TensorRT version, GPU or metadata schema, a number out of range), or a --detector file missing, corrupt
or not the network its name says; 5 an output cannot be written (disk
full, permission; the Foxglove port taken); 129 hung up (SIGHUP: the terminal or SSH session closed), 130
interrupted (Ctrl-C), 143 terminated (SIGTERM, e.g. ``docker stop``, systemd): all three finalised like Ctrl-C.
In an image folder, an image that cannot be decoded, is over the pixel limit (fa3d.runtime.policy.MAX_IMAGE_PIXELS,
read from its header before decoding) or is too small to hold a face is skipped and counted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

import cv2

from . import cli_errors
from .aligner import FaceAligner, FaceAlignerOptions, RunningMode
from .backends import BackendError
from .camera import CameraIntrinsics
from .cli_errors import float_in, int_at_least, stops_cleanly
from .clihelp import HelpFormatter
from .default_model import DefaultModelMissing, default_model_path, sample_clip_path
from .detector_engine import DetectorArtifactError, pipeline_detector
from .detectors import DetectorError
from .detectors.registry import DETECTOR_HELP, is_builtin
from . import draw
from .frame_loop import run_pipeline
from .metadata import MetadataError
from .output_check import Output, artifact_files, output_clash
from .outputs import RECORD_SCHEMA_VERSION, JsonLinesWriter, annotated_name, open_annotated, output_kind
from .policy import DEFAULT_DET_EVERY, DEFAULT_DETECTOR, DEFAULT_MAX_FACES, DEFAULT_MIN_CONFIDENCE, MAX_FACES_PER_CALL
from .ros import fa_run as ros_run  # fa-run's one door to the ROS layer (bags, --out-bag, --foxglove)
from .smoothing import OneEuroOptions
from .sources import IMAGE_SUFFIXES, ImageSource, SourceError, is_ros_bag, list_images, open_source

EXIT_OK, EXIT_USAGE, EXIT_SOURCE, EXIT_MODEL, EXIT_OUTPUT = 0, 2, 3, 4, 5
EXIT_INTERRUPTED, EXIT_TERMINATED = cli_errors.EXIT_INTERRUPTED, cli_errors.EXIT_TERMINATED
_POSITIVE = float_in(0.0, 1e6, low_open=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fa-run", description=__doc__.split("\n\n")[0],
                                epilog="Exit codes: 0 ok, 2 usage (also an output refused before the run), 3 source "
                                       "(also a bad bag), 4 model/sidecar/detector file, 5 output cannot be written, 129 hung up "
                                       "(SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM); on 129, 130 and "
                                       "143 the outputs are finalised. The JSON-lines schema is in `python -m pydoc "
                                       "fa3d.runtime.cli_run`.",
                                formatter_class=HelpFormatter)
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", help="ONNX model (with its .onnx.json sidecar), run by ONNX Runtime "
                                   "(default: the model shipped inside fa3d)")
    m.add_argument("--engine", help="TensorRT engine .plan (with its .plan.json sidecar), run by TensorRT + pycuda")
    s = p.add_mutually_exclusive_group()
    s.add_argument("--source", help="video file, image, folder of images, rtsp:// URL, a GStreamer pipeline "
                                    "ending in appsink, or a ROS bag (rosbag2 folder, .mcap, .db3, ROS 1 .bag; "
                                    "fa3d[ros]) (default: the bundled sample clip)")
    s.add_argument("--camera", help="camera: an index (0, V4L2 on Linux), a device path (/dev/video0) or a "
                                    "GStreamer pipeline ending in appsink")
    p.add_argument("--output", help="annotated output: a video (.mp4, .avi, .mkv), an image (.png, .jpg; one "
                                    "image source) or a folder (one annotated PNG per frame; face.jpg -> "
                                    "face.jpg.png)")
    p.add_argument("--json", dest="json_out", help="JSON lines to write, one record per frame (schema: see module doc)")
    p.add_argument("--headless", action="store_true", help="never open a window (also implied without a display)")
    p.add_argument("--max-frames", type=int_at_least(1), help="stop after this many frames")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "tensorrt", "auto"],
                   help="ONNX Runtime execution provider (ignored for --engine)")
    p.add_argument("--threads", type=int_at_least(1), help="ONNX Runtime intra-op threads (default: ONNX Runtime's choice)")
    p.add_argument("--detector", default=DEFAULT_DETECTOR, help=f"face detector: {DETECTOR_HELP}")
    p.add_argument("--detector-engine", metavar="PLAN",
                   help="BlazeFace's TensorRT engine (with its .json sidecar, written by fa-export); default: "
                        "blazeface_short_range.plan beside --engine when it is there, else ONNX Runtime on the CPU "
                        "(the start-up line says which)")
    p.add_argument("--det-every", type=int_at_least(1), default=DEFAULT_DET_EVERY,
                   help="look for new faces over the whole frame (BlazeFace: a sweep spread over the frames "
                        "between; other detectors: on one frame) at least every N frames")
    p.add_argument("--min-confidence", type=float_in(0.0, 1.0), default=DEFAULT_MIN_CONFIDENCE,
                   help="report faces whose confidence (the model's face probability) is at least this; in a video a "
                        "track below it is dropped and a search runs (default %(default)s, chosen by measurement: "
                        "docs/detection-tracking.md)")
    p.add_argument("--max-faces", type=int_at_least(1, MAX_FACES_PER_CALL), default=DEFAULT_MAX_FACES,
                   help="track at most this many faces")
    p.add_argument("--no-track", action="store_true",
                   help="detect on every frame, no tracking (default for image folders)")
    p.add_argument("--intrinsics", help="camera intrinsics JSON {fx, fy, cx, cy[, dist]}: adds head_pose_cam (PnP)")
    p.add_argument("--fov", type=float_in(1.0, 179.0, low_open=True, high_open=True), help="horizontal field of view in degrees, a guess for intrinsics")
    p.add_argument("--smooth", action="store_true", help="One Euro smoothing of landmarks, dense points and pose")
    p.add_argument("--smooth-min-cutoff", type=_POSITIVE, default=1.0, help="One Euro min cut-off (Hz): lower = less jitter")
    p.add_argument("--smooth-beta", type=float_in(0.0, 1e6), default=0.01, help="One Euro speed coefficient: higher = less lag")
    p.add_argument("--smooth-d-cutoff", type=_POSITIVE, default=1.0, help="One Euro derivative cut-off (Hz)")
    p.add_argument("--dense", action="store_true", help="include the dense points in the JSON lines")
    ros_run.add_arguments(p)  # --source BAG options, --out-bag, --foxglove, --record
    return p


def display_available() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _err(msg: str) -> None:
    cli_errors.error("fa-run", msg)


def _source_images(args) -> list[Path]:
    """The image files of an image or image-folder ``--source`` (none for other sources)."""
    src = Path(args.source) if args.source is not None else None
    if src is not None and src.is_dir():
        return list_images(src)
    if src is not None and src.suffix.lower() in IMAGE_SUFFIXES:
        return [src]
    return []


def _planned_outputs(args, images: list[Path]) -> dict:
    """``--output`` and ``--json`` as :class:`~fa3d.runtime.output_check.Output` s: their kind, and for an
    output folder of an image source the files it will write (checked against the images before the run)."""
    plan: dict = {"--json": args.json_out}
    if args.output:
        if output_kind(args.output) != "folder":
            plan["--output"] = Output(args.output)
        else:
            folder = Path(args.output)
            plan["--output"] = Output(folder, "folder", tuple(folder / annotated_name(p, 0) for p in images))
    return plan


def _check_args(args) -> str | None:
    """A one-line usage problem with the arguments, or None: every output is checked here, before any work
    (kind, clashes with each other and with every input: source and its images, model and sidecar, ...)."""
    try:
        images = _source_images(args)
        outputs = _planned_outputs(args, images)
    except (ValueError, OSError) as e:
        return str(e)
    if args.intrinsics and args.fov:
        return "give --intrinsics or --fov, not both"
    problem = ros_run.check_args(args)
    if problem:
        return problem
    inputs = [args.source, *images, *artifact_files(args.model), *artifact_files(args.engine), args.intrinsics,
              *artifact_files(args.detector_engine),
              None if is_builtin(args.detector) else args.detector]
    if args.source is None and args.camera is None:  # the bundled sample clip is an input too
        with contextlib.suppress(DefaultModelMissing):
            inputs.append(sample_clip_path())
    if args.model is None and args.engine is None:  # the shipped default model: its files are inputs too
        with contextlib.suppress(DefaultModelMissing):
            inputs += artifact_files(default_model_path())
    if args.out_bag:
        outputs["--out-bag"] = Output(args.out_bag, "folder")
    outputs["--record"] = args.record
    return output_clash(outputs, inputs)


@stops_cleanly("fa-run")
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 for --help
        return int(e.code or 0)
    problem = _check_args(args)
    if problem:
        _err(problem)
        return EXIT_USAGE
    with cli_errors.graceful_signals() as guard:  # SIGTERM stops the run like Ctrl-C
        try:
            return _main(args, guard)
        except KeyboardInterrupt as e:  # before or after the frame loop (it handles its own)
            print(f"fa-run: {guard.name}", file=sys.stderr)
            return guard.interrupted(e)


def _main(args, guard) -> int:
    try:
        intrinsics = CameraIntrinsics.load(args.intrinsics) if args.intrinsics else None
        smoothing = OneEuroOptions(enabled=args.smooth, min_cutoff=args.smooth_min_cutoff,
                                   beta=args.smooth_beta, d_cutoff=args.smooth_d_cutoff)
        options = FaceAlignerOptions(device=args.device, num_threads=args.threads, mode=RunningMode.VIDEO,
                                     detector=args.detector, det_every_n=args.det_every,
                                     min_confidence=args.min_confidence, max_faces=args.max_faces,
                                     smoothing=smoothing, intrinsics=intrinsics, fov_deg=args.fov)
    except (ValueError, FileNotFoundError) as e:
        _err(str(e))
        return EXIT_USAGE
    out_kind = output_kind(args.output) if args.output else None  # checked in _check_args

    # the source first: a missing input is reported before a model is loaded
    try:
        if args.camera is not None:
            spec = args.camera
        elif args.source is not None:
            spec = args.source
        else:
            spec = str(sample_clip_path())
        if args.camera is None and is_ros_bag(spec):
            from .ros import fa_run as ros_run

            try:
                source = ros_run.open_bag(args)
            except ros_run.TopicChoiceError as e:  # several image topics and no --topic
                _err(str(e))
                return EXIT_USAGE
        else:
            source = open_source(spec)
    except (SourceError, DefaultModelMissing) as e:
        _err(str(e))
        return EXIT_SOURCE
    if getattr(source, "intrinsics", None) is not None and options.intrinsics is None and options.fov_deg is None:
        options = dataclasses.replace(options, intrinsics=source.intrinsics)  # a bag's CameraInfo
    if out_kind == "image" and not (isinstance(source, ImageSource) and source.count == 1):
        source.close()
        _err(f"--output {args.output}: an image output takes a single image source; give a folder name "
             "(one annotated image per frame) or a video name")
        return EXIT_USAGE

    track = not args.no_track and not isinstance(source, ImageSource)
    if not track:
        options = dataclasses.replace(options, mode=RunningMode.IMAGE)
    with contextlib.closing(source), contextlib.ExitStack() as stack:
        try:
            model = args.engine or args.model or default_model_path()
            det = pipeline_detector(model, args.detector, args.detector_engine, stack)
            aligner = FaceAligner.from_artifact(model, options, det.detector)
        except (MetadataError, BackendError, FileNotFoundError, DetectorArtifactError) as e:  # DefaultModelMissing
            _err(str(e))
            return EXIT_MODEL
        print(f"fa-run: model {model} ({aligner.backend.name} {aligner.backend.metadata.precision}), detector "
              f"{det.description}", flush=True)
        with aligner:
            try:
                aligner.detector  # load it now: a bad --detector is reported up front
            except DetectorError as e:  # a detector file missing, corrupt or not the network it says
                _err(f"--detector: {e}")
                return EXIT_MODEL
            except ValueError as e:  # an unknown name
                _err(f"--detector: {e}")
                return EXIT_USAGE
            try:
                report = _run(aligner, source, args, track)
            except SourceError as e:
                _err(str(e))
                return EXIT_SOURCE
            except (BackendError, DetectorError) as e:  # an artifact that loaded but returns what it should not
                _err(str(e))
                return EXIT_MODEL
            except OSError as e:
                _err(f"cannot write an output: {cli_errors.os_error_text(e)}")
                return EXIT_OUTPUT
    print(report.format_table())
    if report.interrupted:
        outs = [p for p in (args.output, args.json_out, args.out_bag, args.record) if p]
        print(f"fa-run: {guard.name} after {report.frames} frames; finalised {', '.join(outs) or 'no outputs'}",
              file=sys.stderr)
        return guard.interrupted()
    return EXIT_OK


def record(frame, faces, dense: bool) -> dict:
    """One JSON-lines record (schema: the module doc)."""
    h, w = frame.image.shape[:2]
    rec = {"schema_version": RECORD_SCHEMA_VERSION, "frame": frame.index,
           "timestamp_ms": round(frame.timestamp_ms, 3), "width": w, "height": h}
    if getattr(frame, "path", None):
        rec["file"] = Path(frame.path).name
    rec["faces"] = [f.to_json(dense=dense) for f in faces]
    return rec


def _run(aligner, source, args, track: bool):
    show = not args.headless and display_available()
    with contextlib.ExitStack() as stack:
        annotated = open_annotated(stack, args.output, source.fps or 30.0) if args.output else None
        jl = JsonLinesWriter(args.json_out) if args.json_out else None
        if jl is not None:
            stack.callback(jl.close)
        if show:
            stack.callback(cv2.destroyAllWindows)
        ros = None
        if ros_run.wanted(args):
            ros = stack.enter_context(ros_run.RosOutputs(args, aligner))

        def sink(frame, faces):
            if jl is not None:
                jl.write(record(frame, faces, args.dense))
            if ros is not None:
                ros.write(frame, faces)
            if annotated is None and not show:
                return None
            canvas = draw.draw_results(frame.image, faces)
            if annotated is not None:
                annotated.write(frame, canvas)
            if show:
                cv2.imshow("fa-run", canvas)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    return False
            return None

        try:
            report = run_pipeline(aligner, source, track=track, max_frames=args.max_frames, sink=sink)
        except BaseException:
            if jl is not None:
                jl.discard()
            raise
    return report


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
