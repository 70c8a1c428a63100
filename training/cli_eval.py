"""``fa-eval``: score a model or a predictions file with the literature's protocols.

Exit codes: 0 done; 2 bad arguments or inputs (data set, predictions file, model or checkpoint that cannot be
read, an output naming an input, a model's sidecar, another output or a folder); 5 an output cannot be written
(disk full, permission); 129 hung up (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tqdm import tqdm

from fa3d.data.evaluation import metrics
from fa3d.data.evaluation import protocols as ev
from fa3d.runtime.atomic import atomic_write_text
from fa3d.runtime.cli_errors import (EXIT_OUTPUT, artifact_files, check_outputs_not_inputs, exit_codes_help,
                                    int_at_least, os_error_text, stops_cleanly)

from .torch_backend import is_checkpoint, open_aligner


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        epilog=exit_codes_help(__doc__),
        prog="fa-eval",
        description="Evaluate face alignment and head pose with the protocols of the literature "
                    "(3DDFA's AFLW2000-3D and AFLW, BIWI). Give either a MODEL (run through fa3d's runtime, "
                    "so the deployed preprocessing is what gets measured) or --predictions PRED.npz. "
                    "Prints a table; NME is in percent of sqrt(w*h) of the ground-truth landmark box, "
                    "pose errors in degrees. Images without a prediction are failures: counted, reported, "
                    "and excluded from the means.")
    p.add_argument("model", nargs="?", default=None,
                   help="a model: an ONNX file or TensorRT engine (run by the runtime), or a training checkpoint "
                        "(.pt, run by PyTorch on CPU through the same preprocessing); "
                        "omit it when using --predictions")
    p.add_argument("--predictions", metavar="PRED.npz",
                   help="external predictions: names (N,) image file names, landmarks (N,68,3) 0-based image "
                        "pixels, pose (N,3) yaw, pitch, roll in degrees (fa3d's convention)")
    p.add_argument("--dataset", required=True, choices=ev.DATASETS,
                   help="protocol: aflw2000-3d (68-point NME + pose), aflw (AFLW crops in the aflw19k layout, "
                        "NME over the visible checked points + yaw), aflw19k-val (the same on the val split), "
                        "aflw19k-val-teacher (the val crops against the 3DDFA_V2 teacher's 68 points and "
                        "angles), aflw19k-val-teacher-tta (the same against the test-time-augmented teacher), "
                        "helen-test (faces_extra's HELEN test crops: NME over the 51 inner points of the human "
                        "300W annotation), biwi (pose MAE)")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="the dataset folder (AFLW2000-3D: the image*.jpg/.mat folder; aflw: images/ + "
                        "labels.npz; helen-test: a faces_extra folder; biwi: the folder holding hpdb/)")
    p.add_argument("--json", metavar="OUT.json", help="write {nme2d, pose_mae, failures} as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="write the CED curve (up to 10%% NME) as a PNG")
    p.add_argument("--box", choices=ev.BOX_CHOICES, default="gt",
                   help="model mode: face boxes from the ground-truth landmarks by 3DDFA's rule (gt, default; "
                        "AFLW crops: the box whose enlargement is the whole crop), from the tight box of the 68 "
                        "points the dataset scores against (points; aflw19k-val-teacher*: the teacher's points, "
                        "the benchmark's rule) or from the runtime's detector (detector; BIWI always uses the "
                        "detector)")
    p.add_argument("--biwi-protocol", choices=("all", "split70"), default="all",
                   help="BIWI: every frame (all) or the test 30%% of the 70/30 split by sequence (split70)")
    p.add_argument("--save-predictions", metavar="PRED.npz",
                   help="model mode: also write the model's predictions in the --predictions format")
    p.add_argument("--compare", action="append", default=[], metavar="[LABEL=]PRED.npz",
                   help="also score these predictions (repeatable; e.g. another model's --save-predictions "
                        "output) on the same images: their tables follow the main one and their curves are "
                        "drawn on the --plot CED; --json stays the main result's. LABEL defaults to the file name")
    p.add_argument("--label", default=None,
                   help="the main result's name in the tables and the CED legend (default: the model or "
                        "predictions path)")
    p.add_argument("--pose-source", choices=("predicted", "head", "landmarks", "blend"), default="predicted",
                   help="the pose to score: as reported (predicted: the runtime's default for a model, the file's "
                        "pose for predictions); for a model, the runtime's pose head (head), the rotation fitted "
                        "to the predicted 3D landmarks (landmarks) or their chordal mean (blend); for predictions "
                        "files (main and --compare), landmarks and blend are recomputed from the file")
    p.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate only the first N images (smoke runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _paired_difference(main_result, other, main_label: str) -> str:
    """One line: the compared result's mean NME minus the main one's on the images both scored, with a
    paired-bootstrap 95 % interval (which images were drawn; not training noise)."""
    if not len(main_result.per_image_nme) or not len(other.per_image_nme):
        return f"difference to {main_label}: no NME to compare"
    a = dict(zip(main_result.scored_names, main_result.per_image_nme))
    b = dict(zip(other.scored_names, other.per_image_nme))
    common = [n for n in a if n in b]
    if not common:
        return f"difference to {main_label}: no image scored by both"
    d, lo, hi = metrics.paired_bootstrap(np.array([a[n] for n in common]), np.array([b[n] for n in common]))
    return (f"NME minus {main_label}'s on the {len(common)} images both scored: {d:+.3f} points "
            f"(95 % paired-bootstrap interval {lo:+.3f} to {hi:+.3f})")


@stops_cleanly("fa-eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (args.model is None) == (args.predictions is None):
        print("fa-eval: give either a MODEL or --predictions PRED.npz (exactly one)", file=sys.stderr)
        return 2
    compared_files = [spec.partition("=")[2] or spec for spec in args.compare]
    if not check_outputs_not_inputs("fa-eval", {"--json": args.json, "--plot": args.plot,
                                                "--save-predictions": args.save_predictions},
                                    [*artifact_files(args.model), args.predictions, *compared_files, args.data]):
        return 2
    try:
        gt = ev.load_ground_truth(args.dataset, args.data, limit=args.limit, biwi_protocol=args.biwi_protocol)
        others = []  # read and checked before a model runs, so a bad file fails fast
        for spec in args.compare:
            label, sep, path = spec.partition("=")
            if not sep:
                label, path = Path(spec).stem, spec
            if not label or not path:
                raise ValueError(f"--compare {spec!r}: expected [LABEL=]PRED.npz")
            others.append((label, ev.load_predictions(path)))
        if args.predictions:
            preds = ev.load_predictions(args.predictions)
        else:
            aligner = open_aligner(args.model, args.pose_source) if is_checkpoint(args.model) else None
            preds = ev.predict_with_model(
                args.model, gt, box=args.box, pose_source=args.pose_source, aligner=aligner,
                progress=None if args.quiet else (lambda it: tqdm(it, desc="fa-eval", unit="img")))
        file_pose = "predicted" if args.model else args.pose_source  # a model already ran with it
        result = ev.evaluate(gt, ev.with_pose_from(preds, file_pose))
        compared = [(label, ev.evaluate(gt, ev.with_pose_from(p, args.pose_source if args.pose_source != "head"
                                                              else "predicted"))) for label, p in others]
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"fa-eval: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fa-eval: interrupted", file=sys.stderr)
        return 130
    main_label = args.label or str(args.model or args.predictions)
    for i, (label, res) in enumerate([(main_label, result)] + compared):
        if compared:
            print(("" if i == 0 else "\n") + f"== {label}")
        print(res.table())
        if res.failed_names:
            shown = ", ".join(res.failed_names[:10])
            more = f" (+{len(res.failed_names) - 10} more)" if len(res.failed_names) > 10 else ""
            print(f"failures: {shown}{more}")
        if i > 0:
            print(_paired_difference(result, res, main_label))
    try:
        _write_outputs(args, preds, result, compared, main_label)
    except OSError as e:
        print(f"fa-eval: error: cannot write an output: {os_error_text(e)}", file=sys.stderr)
        return EXIT_OUTPUT
    return 0


def _write_outputs(args, preds, result, compared, main_label: str) -> None:
    """--save-predictions, --json and --plot (an OSError says which could not be written)."""
    if args.save_predictions and args.model:
        ev.save_predictions(args.save_predictions, preds)
    if args.json:
        atomic_write_text(args.json, json.dumps(result.to_json(), indent=2) + "\n")
    if args.plot:
        if result.nme2d is None:
            print("fa-eval: no NME for this protocol; no CED plot written", file=sys.stderr)
        else:
            curves = {main_label: (result.per_image_nme, result.failures)}
            for label, res in compared:
                if label in curves:
                    label = f"{label} ({len(curves) + 1})"
                curves[label] = (res.per_image_nme, res.failures)
            metrics.plot_ced(curves, args.plot, title=f"CED on {args.dataset}")


if __name__ == "__main__":
    sys.exit(main())
