"""tools.calibrate_confidence and tools.confidence_eval: the numbers they report are right on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
from tools.calibrate_confidence import fit_platt  # noqa: E402
from tools.confidence_eval import _auc, _ece  # noqa: E402


def test_platt_fit_recovers_a_known_scaling():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 200_000)
    y = rng.random(len(z)) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))  # the truth: sigmoid(0.5 z - 1)
    # equal weight to each class is what the fit assumes; with this prior, the shift moves by the log odds
    a, c = fit_platt(z[y], z[~y])
    prior = np.log(y.mean() / (1 - y.mean()))
    assert a == pytest.approx(0.5, abs=0.02) and c == pytest.approx(-1.0 - prior, abs=0.05)


def test_auc_and_calibration_error_on_known_scores():
    assert _auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert _auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert _ece(np.full(10, 1.0), np.full(10, 0.0)) == pytest.approx(0.0)
    assert _ece(np.full(10, 0.5), np.full(10, 0.5)) == pytest.approx(0.0)  # says 0.5 and is right half the time
    assert _ece(np.full(10, 0.99), np.full(10, 0.99)) == pytest.approx(0.49, abs=1e-9)


def test_face_free_clip_blanks_the_face_box_and_scores_frames_with_a_face(tmp_path):
    import json

    from tools.face_free_clip import blank_face, score

    crop = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    tight = np.array([30.0, 35.0, 90.0, 100.0])
    out = blank_face(crop, tight, np.random.default_rng(1))
    inside = out[35:100, 30:90].reshape(-1, 3)
    assert (inside == inside[0]).all()  # one flat colour over the whole face box
    assert (out[:30] == crop[:30]).all() and (out[:, :25] == crop[:, :25]).all()  # hair and background kept
    lines = [{"frame": 0, "faces": []}, {"frame": 1, "faces": [{"box": [0, 0, 1, 1]}]}, {"frame": 2, "faces": []}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert score(tmp_path / "r.jsonl") == {"frames": 3, "frames_with_a_face": 1, "face_rate": 1 / 3}
