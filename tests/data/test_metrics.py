"""Metrics against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fa3d.data.evaluation import metrics


def _square_face(side: float = 100.0, n: int = 68) -> np.ndarray:
    """GT points whose tight box is side x side (sqrt(w*h) = side)."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0, side, (n, 2))
    p[0], p[1] = (0, 0), (side, side)
    return p


def test_known_shift_gives_known_nme():
    gt = _square_face(200.0)[None]
    pred = gt + np.array([3.0, 4.0])  # every point 5 px off
    assert metrics.nme(pred, gt)[0] == pytest.approx(5.0 / 200.0 * 100.0)


def test_nme_normalises_by_sqrt_wh_of_gt_box():
    gt = np.array([[[0, 0], [400, 100], [200, 50]]], float)  # w=400, h=100 -> sqrt = 200
    pred = gt.copy()
    pred[0, 2] += [0, 6]  # one of three points 6 px off: mean error 2 px
    assert metrics.nme(pred, gt)[0] == pytest.approx(2.0 / 200.0 * 100.0)


def test_nme_mask_and_nan_points():
    gt = _square_face(100.0, 4)[None].copy()
    pred = gt.copy()
    pred[0, 2] += [10, 0]
    gt_nan = gt.copy()
    gt_nan[0, 3] = np.nan  # invisible point: ignored for error and box
    pred[0, 3] = [1e6, 1e6]
    e = metrics.nme(pred, gt_nan)[0]
    size = metrics.gt_box_size(gt_nan)[0]
    assert e == pytest.approx(10.0 / 3 / size * 100)
    m = np.array([[True, True, False, False]])
    assert metrics.nme(pred, gt_nan, mask=m)[0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no evaluated point"):
        metrics.nme(pred, gt_nan, mask=np.zeros((1, 4), bool))


def test_yaw_bins_balanced_and_all():
    vals = np.array([1.0, 3.0, 10.0, 20.0, 100.0])
    yaw = np.array([-30.0, 10.0, 30.5, -60.0, 61.0])  # bins: 0-30, 0-30, 30-60, 30-60, 60-90
    out = metrics.yaw_bin_means(vals, yaw)
    assert out["0-30"] == pytest.approx(2.0)
    assert out["30-60"] == pytest.approx(15.0)
    assert out["60-90"] == pytest.approx(100.0)
    assert out["balanced"] == pytest.approx((2 + 15 + 100) / 3)
    assert out["all"] == pytest.approx(vals.mean())


def test_empty_bin_is_none_and_left_out_of_balanced():
    out = metrics.yaw_bin_means(np.array([2.0, 4.0]), np.array([5.0, 45.0]))
    assert out["60-90"] is None
    assert out["balanced"] == pytest.approx(3.0)


def test_pose_mae_99_degree_filter():
    gt = np.array([[10.0, 0, 0], [-20.0, 5, 5], [100.0, 0, 0], [0, -99.5, 0]])
    pred = gt + np.array([[1.0, 2, 3], [3.0, 2, 1], [50.0, 50, 50], [50.0, 50, 50]])
    out = metrics.pose_mae(pred, gt)
    assert out["yaw"] == pytest.approx(2.0)
    assert out["pitch"] == pytest.approx(2.0)
    assert out["roll"] == pytest.approx(2.0)
    assert out["mean"] == pytest.approx(2.0)
    everything = metrics.pose_mae(pred, gt, limit=None)
    assert everything["yaw"] == pytest.approx((1 + 3 + 50 + 50) / 4)


def test_pose_mae_yaw_only():
    out = metrics.pose_mae(np.array([[10.0], [20.0]]), np.array([[12.0], [16.0]]), angles=("yaw",))
    assert out["yaw"] == pytest.approx(3.0) and out["pitch"] is None and out["mean"] == pytest.approx(3.0)


def test_ced_counts_failures_in_denominator():
    t, f = metrics.ced_curve(np.array([1.0, 2.0, 3.0]), failures=1, max_error=10.0, steps=11)
    assert f[-1] == pytest.approx(0.75)  # the failure never reaches any threshold
    assert f[2] == pytest.approx(0.5)  # <= 2 %: two of four


def test_eval_result_json_keys_and_table():
    r = metrics.EvalResult("aflw2000-3d", 10, 2,
                           {"0-30": 1.0, "30-60": 2.0, "60-90": 3.0, "balanced": 2.0, "all": 1.5},
                           {"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean": 2.0})
    j = json.loads(json.dumps(r.to_json()))
    assert set(j) == {"nme2d", "pose_mae", "failures"}
    assert set(j["nme2d"]) == {"0-30", "30-60", "60-90", "balanced", "all"}
    assert set(j["pose_mae"]) == {"yaw", "pitch", "roll", "mean"}
    assert j["failures"] == 2
    assert "2 failures" in r.table()


def test_plot_ced_writes_png(tmp_path):
    out = tmp_path / "ced.png"
    metrics.plot_ced({"model": (np.array([1.0, 2.0, 5.0]), 1)}, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
