"""tools.point_offsets: the per-bin median offset of each point and its split-half removal."""

from __future__ import annotations

import json

import numpy as np

from tools.point_offsets import EDGES, HUMAN, corrected, main, offsets, split_halves, yaw_bin


def _faces(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.uniform(20, 100, (n, 68, 3))
    norm = rng.uniform(50, 70, n)
    yaw = np.where(np.arange(n) % 2 == 0, 0.0, 45.0)  # bins -10..10 and 30..60
    return ref, norm, yaw


def test_yaw_bins_are_signed_and_closed_at_ninety():
    assert yaw_bin(np.array([-90.0, -45.0, 0.0, 45.0, 90.0, 120.0])).tolist() == [0, 1, 3, 5, 6, 6]
    assert len(EDGES) == 8


def test_a_constant_offset_of_one_point_in_one_bin_is_found_and_removed():
    ref, norm, yaw = _faces()
    bins = yaw_bin(yaw)
    pred = ref.copy()
    turned = bins == 5
    pred[turned, 8, 0] += 0.05 * norm[turned]  # the chin 5 % of the box to the right at 30-60 deg
    pred += np.random.default_rng(1).normal(0, 0.01, pred.shape)  # noise well below the offset
    off = offsets(pred, ref, norm, bins)
    assert abs(off[5, 8, 0] - 0.05) < 0.002 and abs(off[3, 8, 0]) < 0.002
    assert np.abs(off[5, np.arange(68) != 8]).max() < 0.002
    fixed = corrected(pred, ref, norm, bins, HUMAN, 1.0)
    assert np.abs(fixed[turned, 8, 0] - ref[turned, 8, 0]).max() < 0.2  # px, from 2.5-3.5 px
    untouched = corrected(pred, ref, norm, bins, [i for i in range(68) if i not in HUMAN], 1.0)
    np.testing.assert_allclose(untouched[:, 8], pred[:, 8])  # point 8 is a human point: "other" leaves it
    np.testing.assert_allclose(corrected(pred, ref, norm, bins, HUMAN, 0.0), pred)


def test_the_correction_is_out_of_sample():
    """A half is corrected by the other half's offsets only: an offset only one half has is left in place."""
    ref, norm, yaw = _faces(n=20)
    bins = yaw_bin(np.zeros(20))
    half = split_halves(20)
    assert half.any() and (~half).any()
    pred = ref.copy()
    pred[half, 36, 0] += 0.1 * norm[half]  # 10 % of each face's box
    fixed = corrected(pred, ref, norm, bins, HUMAN, 1.0)
    np.testing.assert_allclose(fixed[half, 36, 0], pred[half, 36, 0])  # in-sample would have removed it
    np.testing.assert_allclose(fixed[~half, 36, 0], pred[~half, 36, 0] - 0.1 * norm[~half])  # the other: moved


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "none.npz"), "--data", str(tmp_path / "nothing")]) == 2
    assert "point_offsets: error" in capsys.readouterr().err


def test_on_aflw19k_val_an_injected_offset_is_reported_and_removed(shared_data, tmp_path):
    """The teacher's own points with the right outer eye corner moved 3 % of the box outward: the tool finds 3 % at
    every pose and the correction takes the teacher measure back to zero."""
    from fa3d.data.evaluation import protocols as ev
    from fa3d.data.evaluation.metrics import gt_box_size

    data = shared_data / "aflw19k"
    gt = ev.load_ground_truth("aflw19k-val-teacher-tta", data)
    lm = gt.lm68.astype(np.float32).copy()
    lm[:, 36, 0] -= 0.03 * gt_box_size(gt.lm68).astype(np.float32)
    pred = tmp_path / "pred.npz"
    ev.save_predictions(pred, ev.Predictions(gt.names, lm, gt.ypr.astype(np.float32)))
    out = tmp_path / "offsets.json"
    assert main([str(pred), "--data", str(data), "--points", "human", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    off = np.array(rep["offsets_percent"])
    np.testing.assert_allclose(off[:, 36, 0], -3.0, atol=0.01)
    assert np.abs(np.delete(off, 36, axis=1)).max() < 0.01
    table = {row["fraction"]: row["teacher"]["balanced"] for row in rep["correction"]}
    assert table[0.0] > 0.03 and table[1.0] < 0.01
