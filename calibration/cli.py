"""``fa-calib``: build a calibration (or validation) set from your own images or video.

    fa-calib SRC --model MODEL.onnx --out calib.npz [--max N] [--every K] [--detector blazeface|haar|FILE.onnx]

SRC is a folder of images (searched recursively), one image, or a video. Faces are found with the
runtime's detector and cropped with the model's preprocessing (read from MODEL.onnx's sidecar), so
the set fits that model. Quantization itself runs in ``fa-export --int8 --calib calib.npz``.

A labelled folder written by ``fa-label`` (it holds ``labels.npz``) gives a *labelled* set: its faces are
cropped at their labelled boxes and keep their 68 points and pose, so ``fa-export --int8 --val set.npz``
gates on the accuracy loss against those labels instead of the deviation from FP32. So does a data set
of the training side: ``--dataset aflw19k --split val`` reads SRC as an aflw19k folder and keeps its
3DDFA_V2 teacher labels (68 points and pose, crops at the teacher's tight box); ``--stride K`` keeps every
K-th face of the split (research-only data: use it to measure, never ship the set).

Exit codes: 0 written; 2 bad arguments or inputs (missing file, no face found, bad model sidecar, --out naming
an input, the model's sidecar or a folder, or not ending in .npz: all checked before any work); 5 --out cannot
be written (disk full, permission); 129 hung up (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM):
no file is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fa3d.runtime.cli_errors import exit_codes_help, int_at_least, stops_cleanly

from fa3d.runtime.policy import DEFAULT_DETECTOR


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fa-calib", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Calibrate on frames from the camera you deploy with: activation ranges depend on the "
               "lighting, optics and face sizes of the real input.\n\n" + exit_codes_help(__doc__))
    p.add_argument("src", help="a folder of images, an image file, a video file, or an fa-label folder (labelled set)")
    p.add_argument("--model", required=True, help="the FP32 ONNX model (with its .json sidecar) the set is for")
    p.add_argument("--out", required=True, help="output .npz (written atomically)")
    p.add_argument("--dataset", choices=("aflw19k",), default=None,
                   help="read SRC as a data set folder of this kind and keep its labels (aflw19k: the 3DDFA_V2 "
                        "teacher's 68 points and pose); default: SRC is images, a video or an fa-label folder")
    p.add_argument("--split", choices=("train", "val", "all"), default=None,
                   help="--dataset: which split (default val)")
    p.add_argument("--stride", type=int_at_least(1), default=None,
                   help="--dataset: keep every K-th face of the split, before --max (default 1)")
    p.add_argument("--max", type=int_at_least(1), default=256, help="at most this many faces (default 256)")
    p.add_argument("--every", type=int_at_least(1), default=5, help="video: take every K-th frame (default 5)")
    p.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"'blazeface' (the shipped CNN), 'haar' (OpenCV's cascade) or a YuNet/SCRFD ONNX file (name "
                        f"must contain yunet/scrfd); default {DEFAULT_DETECTOR!r}")
    p.add_argument("--spread-yaw", action="store_true",
                   help="run the model on the crops and keep a set spread over its predicted yaw")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    return p


@stops_cleanly("fa-calib")
def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse's usage errors: returned (2); --help still exits
        if not e.code:
            raise
        return int(e.code)
    from fa3d.runtime.cli_errors import EXIT_USAGE, artifact_files, check_outputs_not_inputs, graceful_signals

    if not check_outputs_not_inputs("fa-calib", {"--out": args.out}, [args.src, *artifact_files(args.model)]):
        return EXIT_USAGE
    from fa3d.runtime.atomic import is_special_file

    if Path(args.out).suffix != ".npz" and not is_special_file(args.out):
        print(f"fa-calib: error: --out {args.out!r}: a calibration set file must end in .npz", file=sys.stderr)
        return EXIT_USAGE
    with graceful_signals() as guard:  # SIGTERM: the same clean stop as Ctrl-C
        try:
            return _main(args)
        except KeyboardInterrupt as e:
            print(f"fa-calib: {guard.name}; no calibration set written", file=sys.stderr)
            return guard.interrupted(e)


def _main(args) -> int:
    from fa3d.runtime.metadata import MetadataError, read_sidecar

    from .calibset import (CalibrationSetError, build_calibration_set, build_from_samples, save_calibration_set,
                           spread_by_yaw, yaw_histogram)
    try:
        config = read_sidecar(args.model).preprocess
        from fa3d.runtime.detect import make_detector
        det_obj = make_detector(args.detector)

        def detector(img: np.ndarray) -> np.ndarray:
            return np.asarray(det_obj.detect(img).boxes, dtype=np.float64).reshape(-1, 4)

        want = args.max * 3 if args.spread_yaw else args.max
        if args.dataset is None and (args.split is not None or args.stride is not None):
            raise ValueError("--split and --stride select from a data set: give --dataset too")
        split, stride = args.split or "val", 1 if args.stride is None else args.stride
        if args.dataset == "aflw19k":
            from fa3d.runtime.datasets.mix import load_aflw19k

            samples = load_aflw19k(args.src, split, teacher=True, box="teacher")
            picked = (samples[i] for i in range(0, len(samples), stride))  # lazy: images read one by one
            cs = build_from_samples(picked, config, max_faces=want,
                                    source=f"aflw19k {split} split of {args.src} (stride {stride}), "
                                           "3DDFA_V2 teacher labels")
        elif (Path(args.src) / "labels.npz").is_file():  # an fa-label folder: keep its labels
            from fa3d.runtime.datasets.labelled import LabelledFolder

            cs = build_from_samples(LabelledFolder(args.src), config, max_faces=want,
                                    source=f"labelled folder {args.src}")
        else:
            cs = build_calibration_set(args.src, config, detector=detector, max_faces=want, every=args.every,
                                       progress=not args.no_progress)
        hist = None
        if args.spread_yaw:
            from fa3d.runtime.pose import matrix_to_euler

            from .gate import run_model
            yaw = matrix_to_euler(run_model(args.model, cs.inputs)["rotation"])[:, 0]
            cs = cs.subset(spread_by_yaw(yaw, args.max))
            hist = yaw_histogram(yaw)
    except (CalibrationSetError, MetadataError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"fa-calib: {e}", file=sys.stderr)
        return 2
    try:
        path = save_calibration_set(cs, args.out)
    except OSError as e:
        from fa3d.runtime.cli_errors import EXIT_OUTPUT, os_error_text

        print(f"fa-calib: error: cannot write --out: {os_error_text(e)}", file=sys.stderr)
        return EXIT_OUTPUT
    summary = {"out": str(path), "count": len(cs), "source": cs.source, "input_size": config.input_size,
               "preprocess_fingerprint": config.fingerprint(), "predicted_yaw_histogram": hist}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {path}: {len(cs)} faces from {cs.source} (input {config.input_size} px, preprocessing "
              f"{config.fingerprint()})")
        if hist:
            print(f"predicted yaw of the candidates: {hist}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
