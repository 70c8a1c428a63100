"""The shipped default model's accuracy does not regress: fa-eval on the first 200 aflw19k val crops gives the
figures measured when the model was shipped (tests/data/default_model_accuracy.json), within its tolerances.

A new default model comes with new figures: ``python -m tools.default_accuracy`` re-measures and rewrites the
file; commit it with the model (this test fails while the file describes another model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fa3d.runtime.default_model import DefaultModelMissing, default_model_path
from fa3d.runtime.metadata import sha256_file
from fa3d.training.cli_eval import main as fa_eval

FIGURES = Path(__file__).with_name("default_model_accuracy.json")


@pytest.mark.data
@pytest.mark.slow  # ~2 s of CPU; more on a busy machine
def test_shipped_model_accuracy_on_aflw19k_val(aflw19k, tmp_path):
    try:
        model = default_model_path()
    except DefaultModelMissing:
        pytest.skip("no shipped default model in this checkout")
    expected = json.loads(FIGURES.read_text())
    assert expected["model_sha256"] == sha256_file(model), (
        f"{FIGURES.name} holds the figures of another model: re-measure with `python -m tools.default_accuracy` "
        "and commit the file with the new model")
    out = tmp_path / "eval.json"
    assert fa_eval([str(model), "--dataset", expected["dataset"], "--data", str(aflw19k), "--limit",
                    str(expected["limit"]), "--quiet", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    got = {"nme_balanced": report["nme2d"]["balanced"], "nme_all": report["nme2d"]["all"],
           "yaw_mae": report["pose_mae"]["yaw"], "failures": report["failures"]}
    tol = expected["tolerance"]
    off = {k: (got[k], v) for k, v in expected["figures"].items() if abs(got[k] - v) > tol[k]}
    assert not off, f"(now, shipped) outside the tolerances {tol}: {off}"
