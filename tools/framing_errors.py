"""How a model's error depends on where the face sits in the crop (maintainer tool; research data only).

The aflw19k crops were labelled by the teacher on the whole crop; the face in them sits where the photo's box put
it, sometimes off-centre or small. This tool splits the NME against the teacher's 68 points (aflw19k val, the
teacher's |yaw| bins) by the face's offset from the crop's centre and by its size, both taken from the teacher's
tight 68-point box against the protocol box (the box whose enlargement is the whole crop)::

    fa-eval MODEL --dataset aflw19k-val-teacher-tta --data ../shared/data/aflw19k --save-predictions pred.npz
    python -m tools.framing_errors pred.npz [--compare v4b=other.npz] [--json out.json]

Groups: ``centred`` (offset <= 5 % of the box side and size ratio >= 0.9), ``off-centre`` (offset > 11 %),
``small`` (size ratio < 0.87), ``other``; a crop can be both off-centre and small (counted in both).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fa3d.data.datasets._io import tight_box
from fa3d.data.evaluation import protocols as ev
from fa3d.data.evaluation.metrics import nme, yaw_bins
from fa3d.runtime.atomic import atomic_write_text

DATASET = "aflw19k-val-teacher-tta"
OFF_CENTRE, SMALL, CENTRED_OFFSET, CENTRED_SIZE = 0.11, 0.87, 0.05, 0.9


def framing(gt: ev.GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    """Per crop: the teacher face's centre offset from the protocol box's (fraction of its side, the larger of x
    and y) and the ratio of the two boxes' sides (teacher / protocol)."""
    tight = np.stack([tight_box(p) for p in gt.lm68])
    side_t = np.maximum(tight[:, 2] - tight[:, 0], tight[:, 3] - tight[:, 1])
    side_p = gt.boxes[:, 2] - gt.boxes[:, 0]
    offset = np.abs((tight[:, :2] + tight[:, 2:]) / 2 - (gt.boxes[:, :2] + gt.boxes[:, 2:]) / 2).max(1) / side_p
    return offset, side_t / side_p


def groups(offset: np.ndarray, ratio: np.ndarray) -> dict[str, np.ndarray]:
    off, small = offset > OFF_CENTRE, ratio < SMALL
    centred = (offset <= CENTRED_OFFSET) & (ratio >= CENTRED_SIZE)
    return {"centred": centred, "off-centre": off, "small": small, "other": ~(centred | off | small)}


def table(gt: ev.GroundTruth, preds: ev.Predictions) -> dict[str, dict[str, dict[str, float | int]]]:
    """{group: {yaw bin: {"nme", "n"}}} over the crops ``preds`` covers."""
    idx = preds.index()
    rows = np.array([idx.get(str(n), -1) for n in gt.names])
    have = rows >= 0
    per = np.full(len(gt.names), np.nan)
    per[have] = nme(preds.landmarks[rows[have]], gt.lm68[have])
    offset, ratio = framing(gt)
    bins = yaw_bins(gt.ypr)
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    for name, mask in groups(offset, ratio).items():
        row = {}
        for b, label in enumerate(("0-30", "30-60", "60-90")):
            m = mask & have & (bins == b)
            row[label] = {"nme": float(per[m].mean()) if m.any() else float("nan"), "n": int(m.sum())}
        out[name] = row
    return out


def format_table(label: str, t: dict) -> str:
    bins = ("0-30", "30-60", "60-90")
    lines = [f"== {label}: NME % against the TTA teacher's 68 points (crops)",
             f"{'group':<12}" + "".join(f"{b:>16}" for b in bins)]
    for name, row in t.items():
        lines.append(f"{name:<12}" + "".join(f"{row[b]['nme']:>9.2f} ({row[b]['n']:>4})" for b in bins))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.framing_errors", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", help=f"an fa-eval --save-predictions file of {DATASET} (or aflw19k-val)")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=PRED.npz", help="another file, same table")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "aflw19k"),
                   help="the aflw19k folder (default: ../shared/data/aflw19k beside the checkout)")
    p.add_argument("--json", metavar="OUT.json", help="write the tables as JSON")
    args = p.parse_args(argv)
    try:
        gt = ev.load_ground_truth(DATASET, args.data)
        files = [("main", args.predictions)] + [tuple(c.split("=", 1)) if "=" in c else (Path(c).stem, c)
                                                for c in args.compare]
        tables = {label: table(gt, ev.load_predictions(path)) for label, path in files}
    except (OSError, ValueError, KeyError) as e:
        print(f"framing_errors: {e}", file=sys.stderr)
        return 2
    for label, t in tables.items():
        print(format_table(label, t))
    if args.json:
        atomic_write_text(args.json, json.dumps(tables, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
