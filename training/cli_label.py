"""``fa-label SRC OUT``: pseudo-label faces with the MediaPipe FaceMesh teacher.

Runs in the teacher's own environment (``make teacher-env``, then ``.venv-teacher/bin/fa-label``).

Exit codes: 0 done; 2 bad arguments or inputs; 3 the teacher (MediaPipe) is not installed here; 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): no labels file is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fa3d.runtime.cli_errors import error, exit_codes_help, float_in, int_at_least, stops_cleanly


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=exit_codes_help(__doc__),
        prog="fa-label",
        description="Label faces in a folder of images or a video with MediaPipe FaceMesh (the teacher): "
                    "68 3D iBUG points (through a fixed 468->68 table), head pose, the 468 dense points and "
                    "a confidence, written to OUT/labels.npz in fa3d's labelled-folder format "
                    "(see fa3d.runtime.datasets.labelled). Needs the teacher environment: `make teacher-env`.")
    p.add_argument("src", help="a folder of images (.jpg, .png, ...) or a video file")
    p.add_argument("out", help="output folder; OUT/labels.npz is written last, atomically")
    p.add_argument("--pad", type=int_at_least(0), default=40,
                   help="pixels of black border added around each image before detection (default 40: "
                        "MediaPipe finds more faces in tight crops when they are padded)")
    p.add_argument("--max-faces", type=int_at_least(1), default=1, help="faces to label per image (default 1)")
    p.add_argument("--min-detection-confidence", type=float_in(0.0, 1.0), default=0.5,
                   help="MediaPipe's detection threshold (default 0.5)")
    p.add_argument("--no-copy", action="store_true",
                   help="do not copy the images into OUT/images: the labels point at SRC by absolute path "
                        "(folders only; video frames are always written)")
    p.add_argument("--every", type=int_at_least(1), default=1, help="video: label every N-th frame (default 1)")
    p.add_argument("--limit", type=int_at_least(1), default=None, help="stop after this many images or frames")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@stops_cleanly("fa-label")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src, out = Path(args.src).resolve(), Path(args.out).resolve()
    if out == src or src in out.parents:
        error("fa-label", f"OUT {args.out!r} is SRC or inside it: OUT/labels.npz and OUT/images would be written "
                          "among the inputs (and replace a labels.npz there); choose a folder outside SRC")
        return 2
    try:
        from fa3d.training.teacher.labelling import LabelOptions, label_source
        from fa3d.training.teacher.mediapipe_teacher import TeacherOptions, TeacherUnavailableError

        opts = LabelOptions(
            teacher=TeacherOptions(pad=args.pad, max_faces=args.max_faces,
                                   min_detection_confidence=args.min_detection_confidence),
            copy_images=not args.no_copy, every=args.every, limit=args.limit)
        summary = label_source(args.src, args.out, opts, progress=not args.quiet)
    except TeacherUnavailableError as e:
        print(f"fa-label: {e}", file=sys.stderr)
        return 3
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"fa-label: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fa-label: interrupted; no labels file was written", file=sys.stderr)
        return 130
    print(f"fa-label: {summary.images} images, {summary.faces} faces labelled, {summary.failed} without a face "
          f"-> {summary.labels_path} ({summary.teacher})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
