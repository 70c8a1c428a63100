"""How well a model's face confidence tells a face from a non-face (maintainer tool; research data only).

Crop level, on validation faces no model was trained on (aflw19k ``val``, faces_extra ``val`` = HELEN test)::

    python -m tools.confidence_eval crops runtime/assets/default/model.onnx --json conf_crops.json

Per face, through the runtime (``FaceAligner.process(image, boxes=[box])``, the deployed preprocessing):

* a *positive*: the teacher's tight face box moved like a detector's box (+-10 % shift, +-15 % scale);
* three *negatives* drawn with the training code's rules (:mod:`fa3d.training.augment`): a window beside the
  face (hair, skin, clothes, background; at most 30 % of the face inside), a crop shifted far from the face
  (mostly the black border), and the face's own box with the face painted over.

Prints the precision / recall / face-free rate at a grid of thresholds, the ROC AUC, and the calibration
(expected calibration error over 10 bins, positives and negatives weighted equally).

Clip level, the whole pipeline (detector, tracker, model) in video mode, for a grid of ``--min-confidence``
and detector thresholds::

    python -m tools.confidence_eval clips MODEL --accept CLIP.mp4 [--accept ...] --face-free FREE.mp4 \
        --min-confidence 0.3 0.5 0.7 --det-threshold 0.55 0.6

per setting: the acceptance clips' face-found rate (:mod:`tools.face_clips`' rule), the face-free
clip's frames with a face (:mod:`tools.face_free_clip`), and on the bundled sample clip (``make run``'s) the
frames with exactly one face.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fa3d.runtime import FaceAligner
from fa3d.data.datasets.mix import FacesExtraMix, load_aflw19k
from fa3d.runtime.preprocess import DEFAULT_CROP_SCALE
from fa3d.training.augment import negative_window, paint_over_face

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NEGATIVE_KINDS = ("beside", "far", "painted")


def _jittered(box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    c = (box[:2] + box[2:]) / 2 + rng.uniform(-0.1, 0.1, 2) * np.array([w, h])
    s = rng.uniform(0.85, 1.15)
    return np.concatenate([c - s * np.array([w, h]) / 2, c + s * np.array([w, h]) / 2])


def _window_box(placed) -> np.ndarray:
    c, side = placed
    half = side / 2 / DEFAULT_CROP_SCALE  # the face box whose crop is this window
    return np.concatenate([c - half, c + half])


PARTS = ("all", "fit", "report")


def crop_scores(model: str | None, data: Path, limit: int | None, seed: int = 0,
                part: str = "all") -> dict[str, np.ndarray]:
    """Confidence of every positive and negative crop of the validation faces, by kind. ``part``: ``fit`` = the
    even-numbered aflw19k val faces (what :mod:`tools.calibrate_confidence` fits on), ``report`` = the others
    and HELEN test, ``all`` = both."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    sets = [load_aflw19k(data / "aflw19k", "val", teacher_file="teacher_3ddfa_v2_mb05_tta.npz"),
            FacesExtraMix(data / "faces_extra", "val")]
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {k: [] for k in ("face", *NEGATIVE_KINDS)}
    with FaceAligner.from_artifact(model) as aligner:
        for k, ds in enumerate(sets):
            for i in range(min(len(ds), limit or len(ds))):
                fit = k == 0 and i % 2 == 0
                if (part == "fit" and not fit) or (part == "report" and fit):
                    continue
                s = ds[i]
                box = np.asarray(s.box, np.float64)
                boxes = {"face": _jittered(box, rng)}
                for kind, beside in (("beside", True), ("far", False)):
                    placed = negative_window(box, s.image.shape, DEFAULT_CROP_SCALE, rng, beside=beside)
                    if placed is not None:
                        boxes[kind] = _window_box(placed)
                for kind, b in boxes.items():
                    res = aligner.process(s.image, boxes=b[None].astype(np.float32))
                    out[kind].append(res[0].confidence if res else 0.0)
                painted = paint_over_face(s.image, s.landmarks.astype(np.float64), rng)
                res = aligner.process(painted, boxes=_jittered(box, rng)[None].astype(np.float32))
                out["painted"].append(res[0].confidence if res else 0.0)
    return {k: np.asarray(v) for k, v in out.items()}


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC: the probability that a positive scores above a negative (ties count half)."""
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for v in np.unique(allv):  # average ranks of ties
        sel = allv == v
        ranks[sel] = ranks[sel].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _ece(pos: np.ndarray, neg: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with positives and negatives weighted equally (a balanced prior)."""
    p = np.concatenate([pos, neg])
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    w = np.concatenate([np.full(len(pos), 0.5 / len(pos)), np.full(len(neg), 0.5 / len(neg))])
    idx = np.minimum((p * bins).astype(int), bins - 1)
    err = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            err += w[sel].sum() * abs(np.average(y[sel], weights=w[sel]) - np.average(p[sel], weights=w[sel]))
    return float(err)


def summary(scores: dict[str, np.ndarray]) -> dict:
    pos = scores["face"]
    neg = np.concatenate([scores[k] for k in NEGATIVE_KINDS])
    rows = []
    for t in THRESHOLDS:
        row = {"threshold": t, "recall": float((pos >= t).mean())}
        row.update({f"{k}_accepted": float((scores[k] >= t).mean()) for k in NEGATIVE_KINDS})
        tp, fp = (pos >= t).sum(), (neg >= t).sum()
        row["precision_balanced"] = float((tp / len(pos)) / max(tp / len(pos) + fp / len(neg), 1e-12))
        rows.append(row)
    return {"counts": {k: int(len(v)) for k, v in scores.items()}, "auc": _auc(pos, neg), "ece": _ece(pos, neg),
            "median": {k: float(np.median(v)) for k, v in scores.items()}, "table": rows}


def _print(s: dict) -> None:
    print(f"crops: {s['counts']}  ROC AUC {s['auc']:.4f}  ECE (balanced) {s['ece']:.3f}")
    print("median confidence: " + ", ".join(f"{k} {v:.3f}" for k, v in s["median"].items()))
    print("| threshold | faces kept (recall) | beside accepted | far accepted | painted-over accepted | precision (balanced) |")
    print("|---|---|---|---|---|---|")
    for r in s["table"]:
        print(f"| {r['threshold']:.1f} | {100 * r['recall']:.1f} % | {100 * r['beside_accepted']:.1f} % | "
              f"{100 * r['far_accepted']:.1f} % | {100 * r['painted_accepted']:.1f} % | "
              f"{100 * r['precision_balanced']:.1f} % |")


def _run_clip(model: str | None, clip: Path, min_conf: float, det_thr: float) -> list[dict]:
    """fa-run's records (frame, faces with box and landmarks) for a clip through FaceAligner in video mode."""
    from fa3d.runtime import FaceAlignerOptions, RunningMode
    from fa3d.runtime.detectors.blazeface_detector import BlazeFaceDetector
    from fa3d.runtime.sources import video_frames

    from fa3d.runtime.backends import open_backend
    from fa3d.runtime.default_model import default_model_path

    opts = FaceAlignerOptions(mode=RunningMode.VIDEO, min_confidence=min_conf)
    det = BlazeFaceDetector(score_threshold=det_thr, check_threshold=min(0.45, det_thr - 0.1))
    aligner = FaceAligner(open_backend(Path(model) if model else default_model_path()), opts, detector=det)
    records = []
    with aligner:
        for k, fr in enumerate(video_frames(clip)):
            faces = aligner.process_video(fr.image, k * 1000.0 / 30)
            records.append({"frame": k, "faces": [{"box": f.box.tolist(), "landmarks": f.landmarks.tolist(),
                                                    "confidence": f.confidence} for f in faces]})
    return records


def clip_table(model: str | None, accept: list[Path], face_free: Path | None, min_confs, det_thrs) -> list[dict]:
    import tempfile

    from fa3d.runtime.default_model import sample_clip_path
    from tools.face_clips import score as score_accept

    rows = []
    for det_thr in det_thrs:
        for mc in min_confs:
            row = {"det_threshold": det_thr, "min_confidence": mc}
            for clip in accept:
                with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
                    f.write("\n".join(json.dumps(r) for r in _run_clip(model, clip, mc, det_thr)) + "\n")
                row[f"found_{clip.stem}"] = score_accept(clip, Path(f.name))["found_pct"]
                Path(f.name).unlink()
            if face_free is not None:
                recs = _run_clip(model, face_free, mc, det_thr)
                row["face_free_with_face_pct"] = round(100 * np.mean([bool(r["faces"]) for r in recs]), 2)
            recs = _run_clip(model, sample_clip_path(), mc, det_thr)
            row["sample_exactly_one_face"] = f"{sum(len(r['faces']) == 1 for r in recs)}/{len(recs)}"
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.confidence_eval", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crops", help="positives and negatives cut from the validation faces")
    c.add_argument("model", nargs="?", default=None, help="ONNX model (default: the shipped one)")
    c.add_argument("--data", type=Path, default=Path("../shared/data"), help="the folder holding aflw19k/ and faces_extra/")
    c.add_argument("--limit", type=int, default=None, help="faces per validation set (default: all)")
    c.add_argument("--part", choices=PARTS, default="all",
                   help="all faces, or the ones tools.calibrate_confidence does not fit on (report)")
    c.add_argument("--json", type=Path, default=None, help="write the summary as JSON")
    v = sub.add_parser("clips", help="the whole pipeline on clips, for a grid of thresholds")
    v.add_argument("model", nargs="?", default=None, help="ONNX model (default: the shipped one)")
    v.add_argument("--accept", type=Path, action="append", default=[], help="an acceptance clip (face_clips make)")
    v.add_argument("--face-free", type=Path, default=None, help="the face-free clip (tools.face_free_clip make)")
    v.add_argument("--min-confidence", type=float, nargs="+", default=[0.5])
    v.add_argument("--det-threshold", type=float, nargs="+", default=[0.55])
    v.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    args = p.parse_args(argv)
    if args.cmd == "clips":
        out = clip_table(args.model, args.accept, args.face_free, args.min_confidence, args.det_threshold)
    else:
        out = summary(crop_scores(args.model, args.data, args.limit, part=args.part))
        _print(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
