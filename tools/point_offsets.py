"""How much of a model's distance to the TTA teacher is a systematic, pose-dependent offset of single points?
(maintainer tool; research data only, never shipped).

The main measure of issue #20 is the NME of the model's 68 points against the TTA teacher's on aflw19k val. Part of
that distance can be a *definition* difference rather than imprecision: a point the model puts, on average, a
little off the teacher's for every face of a pose (because another label pulls it there). This tool measures it
from a predictions file of ``fa-eval --save-predictions`` (aflw19k val, all crops)::

    python -m tools.point_offsets PRED.npz [--data ../shared/data/aflw19k] [--points human|other|all]
        [--json out.json]

For each bin of the teacher's signed yaw (-90..-60, -60..-30, -30..-10, -10..10, 10..30, 30..60, 60..90 deg) it
takes the median offset of each point from the teacher's (in % of the teacher's box, ``sqrt(w * h)``), prints the
largest, and then estimates what removing a fraction ``f`` of those offsets would give: fitted on one random half
of the crops and applied to the other (and the other way round), so the estimate is out of sample. It scores
both the teacher measure and AFLW's human points (``aflw19k-val``), since moving a point to the teacher's
definition moves it away from the human one where they differ. ``--points human`` moves only the 8 points the
AFLW 21 human labels supervise (36, 39, 42, 45, 30, 48, 54, 8), ``other`` the remaining 60.

The correction is a diagnostic, not a product feature: it says how much a training change that removes the
pull could buy, and on which points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fa3d.data.evaluation import protocols as ev
from fa3d.data.evaluation.metrics import gt_box_size
from fa3d.runtime.atomic import atomic_write_text
from fa3d.runtime.schema import AFLW21_TO_IBUG68

#: signed teacher-yaw bin edges (deg); the last edge is open so that 90 itself falls in the last bin
EDGES = np.array([-90.0, -60.0, -30.0, -10.0, 10.0, 30.0, 60.0, 90.0 + 1e-6])
HUMAN = tuple(sorted(AFLW21_TO_IBUG68.values()))
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def yaw_bin(yaw: np.ndarray) -> np.ndarray:
    """Index of each yaw's signed bin in :data:`EDGES` (values beyond +-90 go to the outer bins)."""
    return np.clip(np.digitize(yaw, EDGES) - 1, 0, len(EDGES) - 2)


def offsets(pred: np.ndarray, ref: np.ndarray, norm: np.ndarray, bins: np.ndarray,
            rows: np.ndarray | None = None) -> np.ndarray:
    """(n_bins, 68, 2) median offset ``pred - ref`` in units of ``norm`` per bin, over ``rows`` (bool; all by
    default). A bin without rows gets zeros."""
    rel = (pred[..., :2] - ref[..., :2]) / norm[:, None, None]
    rows = np.ones(len(pred), bool) if rows is None else rows
    out = np.zeros((len(EDGES) - 1, pred.shape[1], 2))
    for k in range(len(out)):
        m = rows & (bins == k)
        if m.any():
            out[k] = np.median(rel[m], axis=0)
    return out


def split_halves(n: int, seed: int = 0) -> np.ndarray:
    """(n,) bool: the random half of the rows :func:`corrected` fits on first."""
    return np.random.default_rng(seed).random(n) < 0.5


def corrected(pred: np.ndarray, ref: np.ndarray, norm: np.ndarray, bins: np.ndarray, points, fraction: float,
              seed: int = 0) -> np.ndarray:
    """``pred`` with ``fraction`` of the per-bin offsets of ``points`` removed, split-half out of sample: the offsets
    fitted on one random half of the rows are removed from the other half, and the other way round."""
    half = split_halves(len(pred), seed)
    out = pred.astype(np.float64, copy=True)
    pts = np.asarray(points)
    for fit in (half, ~half):
        off = offsets(pred, ref, norm, bins, fit)
        app = ~fit
        shift = off[bins[app]][:, pts] * norm[app, None, None] * fraction  # (n_app, len(pts), 2)
        out[np.ix_(app, pts, [0, 1])] -= shift
    return out


def _points(which: str) -> tuple[int, ...]:
    return {"human": HUMAN, "other": tuple(i for i in range(68) if i not in HUMAN), "all": tuple(range(68))}[which]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.point_offsets", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help="fa-eval --save-predictions file of aflw19k val (any of its datasets: the "
                   "crops and boxes are the same)")
    p.add_argument("--data", default="../shared/data/aflw19k", help="the aflw19k folder (default: %(default)s)")
    p.add_argument("--points", choices=("human", "other", "all"), default="all",
                   help="which points the correction moves (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split into halves (default: %(default)s)")
    p.add_argument("--top", type=int, default=6, help="largest offsets listed per bin (default: %(default)s)")
    p.add_argument("--json", help="write the per-bin offsets and the correction table as JSON here")
    args = p.parse_args(argv)
    try:
        gt = ev.load_ground_truth("aflw19k-val-teacher-tta", args.data)
        human = ev.load_ground_truth("aflw19k-val", args.data)
        preds = ev.load_predictions(args.predictions)
    except (FileNotFoundError, ValueError) as e:
        print(f"point_offsets: error: {e}", file=sys.stderr)
        return 2
    idx = preds.index()
    missing = [str(n) for n in gt.names if str(n) not in idx]
    if not np.array_equal(gt.names, human.names):
        print(f"point_offsets: error: {args.data}: the teacher and human label files list different crops; "
              "the data folder is inconsistent", file=sys.stderr)
        return 2
    if missing:
        print(f"point_offsets: error: {args.predictions} lacks {len(missing)} of the {len(gt)} aflw19k val crops "
              f"(e.g. {missing[:3]}); save predictions of the whole split (fa-eval without --limit)", file=sys.stderr)
        return 2
    rows = np.array([idx[str(n)] for n in gt.names])
    pred = preds.landmarks[rows].astype(np.float64)
    norm = gt_box_size(gt.lm68)
    bins = yaw_bin(gt.yaw)
    off = offsets(pred, gt.lm68, norm, bins) * 100
    print("median offset from the TTA teacher, % of its box (largest per signed yaw bin; point: |d| (dx, dy))")
    for k in range(len(off)):
        mag = np.linalg.norm(off[k], axis=1)
        top = np.argsort(-mag)[:args.top]
        listed = " ".join(f"{j}{'*' if j in HUMAN else ''}:{mag[j]:.1f}({off[k, j, 0]:+.1f},{off[k, j, 1]:+.1f})"
                          for j in top)
        print(f"  {EDGES[k]:+4.0f}..{min(EDGES[k + 1], 90):+3.0f} deg, {int((bins == k).sum()):4d} crops: {listed}")
    print("(* = one of the 8 points AFLW's human labels supervise)")
    pts = _points(args.points)
    table = []
    print(f"\nthe offsets of {args.points} points removed by a fraction f (split-half, out of sample), balanced NME %:")
    print("| f | TTA teacher 0-30 / 30-60 / 60-90, balanced | AFLW human points, balanced |")
    print("|---|---|---|")
    for f in FRACTIONS:
        q = corrected(pred, gt.lm68, norm, bins, pts, f, args.seed)
        qp = ev.Predictions(preds.names[rows], q.astype(np.float32), preds.pose[rows])
        t, h = ev.evaluate(gt, qp).nme2d, ev.evaluate(human, qp).nme2d
        table.append({"fraction": f, "teacher": t, "human": h})
        print(f"| {f:.2f} | {t['0-30']:.2f} / {t['30-60']:.2f} / {t['60-90']:.2f}, {t['balanced']:.3f} "
              f"| {h['balanced']:.3f} |")
    if args.json:
        try:
            atomic_write_text(Path(args.json), json.dumps(
                {"predictions": str(args.predictions), "points": args.points, "edges_deg": EDGES.tolist(),
                 "offsets_percent": off.round(4).tolist(), "correction": table}, indent=1))
        except OSError as e:
            print(f"point_offsets: error: cannot write {args.json}: {e.strerror or e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
