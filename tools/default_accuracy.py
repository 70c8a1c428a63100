"""Measure the shipped default model's accuracy for its regression test (a maintainers' tool).

``python -m tools.default_accuracy`` runs ``fa-eval`` on the shipped ``model.onnx`` with the aflw19k val
protocol on its first 200 crops (the command is in the file) and writes ``tests/data/default_model_accuracy.json``:
the model's SHA-256, the command, the figures and the tolerances that
``tests/data/test_default_model_accuracy.py`` holds the model to. Run it whenever a new default model is
shipped (after ``python -m tools.ship_default``) and commit the file with the model: the test fails while the
file describes another model.

Exit codes: 0 written; 2 the data set is missing or fa-eval failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fa3d.runtime.atomic import atomic_write_text
from fa3d.runtime.default_model import default_model_path
from fa3d.runtime.metadata import sha256_file
from fa3d.training.cli_eval import main as fa_eval

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "tests" / "data" / "default_model_accuracy.json"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "aflw19k"  # ../shared beside the checkout
DATASET, LIMIT = "aflw19k-val", 200
#: how far a re-run may drift (ONNX Runtime versions, CPUs): far below what a real regression moves
TOLERANCE = {"nme_balanced": 0.02, "nme_all": 0.02, "yaw_mae": 0.05, "failures": 0}


def eval_argv(model: Path, data: Path, json_out: Path) -> list[str]:
    """fa-eval's arguments for the measurement (also what the test runs)."""
    return [str(model), "--dataset", DATASET, "--data", str(data), "--limit", str(LIMIT), "--quiet",
            "--json", str(json_out)]


def figures_of(report: dict) -> dict[str, float]:
    """The figures the test compares, from fa-eval's JSON report."""
    return {"nme_balanced": report["nme2d"]["balanced"], "nme_all": report["nme2d"]["all"],
            "yaw_mae": report["pose_mae"]["yaw"], "failures": report["failures"]}


def measure(model: Path, data: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "eval.json"
        if fa_eval(eval_argv(model, data, out)) != 0:
            raise RuntimeError("fa-eval failed (see above)")
        return figures_of(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.default_accuracy", description=__doc__.split("\n\n")[0],
                                 epilog="Exit codes: 0 written; 2 the data set is missing or fa-eval failed.")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the aflw19k folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=FIGURES, help="the figures file (default: %(default)s)")
    args = ap.parse_args(argv)
    if not (args.data / "labels.npz").is_file():
        print(f"default_accuracy: {args.data}/labels.npz not found; give --data", file=sys.stderr)
        return 2
    model = default_model_path()
    try:
        figures = measure(model, args.data)
    except RuntimeError as e:
        print(f"default_accuracy: {e}", file=sys.stderr)
        return 2
    doc = {"model_sha256": sha256_file(model), "dataset": DATASET, "limit": LIMIT,
           "command": f"fa-eval {model.name} --dataset {DATASET} --data AFLW19K --limit {LIMIT}",
           "measured_by": "python -m tools.default_accuracy", "figures": figures, "tolerance": TOLERANCE}
    atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}: {figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
