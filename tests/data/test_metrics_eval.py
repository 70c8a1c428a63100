"""fa-eval protocols end to end: predictions files, failures, the JSON, and the model path's wiring."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from fa3d.runtime import schema
from fa3d.data.evaluation import protocols as ev
from fa3d.training.cli_eval import main
from fa3d.data.evaluation.metrics import gt_box_size


def _aflw2000_preds(gt: ev.GroundTruth, shift=(3.0, 4.0), drop: int | None = None) -> ev.Predictions:
    lm = gt.lm68.astype(np.float64).copy()
    lm[..., :2] += shift
    keep = np.ones(len(gt), bool)
    if drop is not None:
        keep[drop] = False
    return ev.Predictions(gt.names[keep], lm[keep], gt.ypr[keep].astype(np.float64) + [1.0, -2.0, 3.0])


def test_aflw2000_known_shift_and_failure(format_samples, tmp_path):
    data = format_samples / "aflw2000_3d"
    gt = ev.load_ground_truth("aflw2000-3d", data)
    assert len(gt) == 3
    r = ev.evaluate(gt, _aflw2000_preds(gt))
    expect = 5.0 / gt_box_size(gt.lm68) * 100  # every point 5 px off
    np.testing.assert_allclose(r.per_image_nme, expect, rtol=1e-6)
    assert r.nme2d["all"] == pytest.approx(expect.mean())
    # GT yaws 1.0, 68.2, 50.5 -> one image per bin
    assert r.nme2d["0-30"] == pytest.approx(expect[0]) and r.nme2d["60-90"] == pytest.approx(expect[1])
    assert r.nme2d["balanced"] == pytest.approx(expect.mean())
    assert r.pose_mae == pytest.approx({"yaw": 1.0, "pitch": 2.0, "roll": 3.0, "mean": 2.0})
    assert r.failures == 0
    # a missing image is a failure: counted, excluded from the means
    r2 = ev.evaluate(gt, _aflw2000_preds(gt, drop=1))
    assert r2.failures == 1 and r2.failed_names == ("image00004.jpg",)
    assert r2.nme2d["all"] == pytest.approx(expect[[0, 2]].mean()) and r2.nme2d["60-90"] is None


def test_cli_predictions_json_and_plot(format_samples, tmp_path, capsys):
    data = format_samples / "aflw2000_3d"
    gt = ev.load_ground_truth("aflw2000-3d", data)
    ev.save_predictions(tmp_path / "pred.npz", _aflw2000_preds(gt, drop=2))
    rc = main(["--predictions", str(tmp_path / "pred.npz"), "--dataset", "aflw2000-3d", "--data", str(data),
               "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "ced.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "1 failures" in out and "image00006.jpg" in out and "NME2D" in out
    j = json.loads((tmp_path / "out.json").read_text())
    assert set(j) == {"nme2d", "pose_mae", "failures"} and j["failures"] == 1
    assert set(j["nme2d"]) == {"0-30", "30-60", "60-90", "balanced", "all"}
    assert set(j["pose_mae"]) == {"yaw", "pitch", "roll", "mean"}
    assert (tmp_path / "ced.png").read_bytes()[:4] == b"\x89PNG"


def test_predictions_file_is_validated(tmp_path, capsys):
    p = tmp_path / "bad.npz"
    np.savez(p, names=np.array(["a.jpg"]), landmarks=np.zeros((1, 68, 2)), pose=np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"bad\.npz: expected landmarks \(1, 68, 3\)"):
        ev.load_predictions(p)
    np.savez(p, names=np.array(["a.jpg"]), landmarks=np.full((1, 68, 3), np.nan), pose=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="finite"):
        ev.load_predictions(p)
    np.savez(p, names=np.array(["a.jpg"]), landmarks=np.zeros((1, 68, 3)))
    with pytest.raises(ValueError, match=r"missing arrays \['pose'\]"):
        ev.load_predictions(p)
    assert main(["--predictions", str(p), "--dataset", "aflw", "--data", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err


def _aflw_fixture(root):
    import cv2

    (root / "images").mkdir(parents=True)
    names = np.array(["c0.jpg", "c1.jpg"])
    for n in names:
        cv2.imwrite(str(root / "images" / n), np.zeros((120, 120, 3), np.uint8))
    pts = np.full((2, 21, 2), -1, np.float32)
    vis = np.zeros((2, 21), bool)
    rng = np.random.default_rng(0)
    for i in range(2):
        vis[i, :] = True
        vis[i, 11] = i == 0  # right eye outer corner invisible on the second crop
        pts[i][vis[i]] = rng.uniform(30, 90, (vis[i].sum(), 2))
    pts[:, 0] = [20, 20]  # a brow point fixes the GT box (no correspondence: not scored)
    pts[:, 20] = [100, 110]
    np.savez(root / "labels.npz", names=names, pts21_crop=pts, visible=vis, yaw_deg=np.array([10.0, -70.0], np.float32),
             roi_box=np.zeros((2, 4), np.float32), pts21_orig=pts, split=np.array(["val", "val"]))
    return names, pts, vis


def test_aflw_protocol_uses_visible_checked_points(tmp_path):
    names, pts, vis = _aflw_fixture(tmp_path)
    gt = ev.load_ground_truth("aflw19k-val", tmp_path)
    lm = np.zeros((2, 68, 3))
    for a, b in schema.AFLW21_TO_IBUG68.items():
        lm[:, b, :2] = pts[:, a]
    lm[:, list(schema.AFLW21_TO_IBUG68.values()), 0] += 2.0  # 2 px off at every checked point
    lm[1, 45, :2] = 1e4  # an invisible GT point: must not count
    preds = ev.Predictions(names, lm, np.array([[12.0, 0, 0], [-75.0, 0, 0]]))
    r = ev.evaluate(gt, preds)
    size = np.sqrt((100 - 20) * (110 - 20))  # box of all visible GT points
    assert r.nme2d["all"] == pytest.approx(2.0 / size * 100)
    assert r.nme2d["0-30"] == pytest.approx(2.0 / size * 100) and r.nme2d["30-60"] is None
    assert r.pose_mae["yaw"] == pytest.approx(3.5) and r.pose_mae["pitch"] is None


class _StubAligner:
    """Stands in for fa3d.runtime.FaceAligner: records the boxes and answers with a fixed face."""

    def __init__(self, faces_found=True):
        self.calls = []
        self.faces_found = faces_found

    def process(self, image, boxes=None):
        self.calls.append(None if boxes is None else np.asarray(boxes).copy())
        if not self.faces_found:
            return []
        b = np.array([10, 10, 100, 100.0]) if boxes is None else np.asarray(boxes)[0]
        return [SimpleNamespace(landmarks=np.full((68, 3), 50.0), yaw_pitch_roll=np.array([1.0, 2, 3]), box=b)]


def test_model_path_passes_gt_boxes_and_counts_missing_faces(format_samples):
    gt = ev.load_ground_truth("aflw2000-3d", format_samples / "aflw2000_3d")
    stub = _StubAligner()
    preds = ev.predict_with_model(None, gt, box="gt", aligner=stub)
    assert len(preds.names) == 3
    for call, box in zip(stub.calls, gt.boxes):
        np.testing.assert_allclose(call, box[None])  # the tight GT landmark box; the runtime enlarges it
    none = ev.predict_with_model(None, gt, box="detector", aligner=_StubAligner(faces_found=False))
    assert len(none.names) == 0
    r = ev.evaluate(gt, none)
    assert r.failures == 3 and r.nme2d["all"] is None


def test_points_box_is_the_tight_box_of_the_scored_points(tmp_path):
    """--box points: aflw19k-val-teacher gets the teacher's tight 68-point box, not the crop's protocol box."""
    from fa3d.data.datasets._io import tight_box
    from fa3d.runtime.pose import euler_to_pose_para

    names, _, _ = _aflw_fixture(tmp_path)
    lm_t = np.random.default_rng(2).uniform(30, 80, (2, 68, 3)).astype(np.float32)
    np.savez(tmp_path / "teacher_3ddfa_v2_mb05.npz", names=names, lm68_crop=lm_t,
             pose_para_rad=euler_to_pose_para(np.zeros((2, 3))).astype(np.float32))
    gt = ev.load_ground_truth("aflw19k-val-teacher", tmp_path)
    stub = _StubAligner()
    ev.predict_with_model(None, gt, box="points", aligner=stub)
    for call, lm in zip(stub.calls, lm_t):
        np.testing.assert_allclose(call, tight_box(lm)[None], rtol=1e-6)
    assert not np.allclose(stub.calls[0], gt.boxes[0][None])  # a different box from the protocol's
    aflw = ev.load_ground_truth("aflw19k-val", tmp_path)
    with pytest.raises(ValueError, match="68 points"):
        ev.predict_with_model(None, aflw, box="points", aligner=stub)
    with pytest.raises(ValueError, match="box must be one of"):
        ev.predict_with_model(None, gt, box="tight", aligner=stub)


def test_fa_eval_requires_exactly_one_source(tmp_path, capsys):
    assert main(["--dataset", "aflw", "--data", str(tmp_path)]) == 2
    assert "exactly one" in capsys.readouterr().err


def test_teacher_protocol_scores_68_points_and_angles_against_the_teacher(tmp_path):
    from fa3d.runtime.pose import euler_to_pose_para

    names, _, _ = _aflw_fixture(tmp_path)
    rng = np.random.default_rng(1)
    lm_t = rng.uniform(20, 100, (2, 68, 3)).astype(np.float32)
    ypr_t = np.array([[20.0, 5.0, -3.0], [-50.0, 10.0, 2.0]])
    np.savez(tmp_path / "teacher_3ddfa_v2_mb05.npz", names=names, lm68_crop=lm_t,
             pose_para_rad=euler_to_pose_para(ypr_t).astype(np.float32))
    gt = ev.load_ground_truth("aflw19k-val-teacher", tmp_path)
    aflw = ev.load_ground_truth("aflw19k-val", tmp_path)
    np.testing.assert_array_equal(gt.boxes, aflw.boxes)  # same crops and boxes: one predictions file for both
    lm = lm_t.astype(np.float64).copy()
    lm[..., 0] += 3.0
    lm[..., 1] -= 4.0
    r = ev.evaluate(gt, ev.Predictions(names, lm, ypr_t + [2.0, -1.0, 4.0]))
    expect = 5.0 / gt_box_size(lm_t) * 100
    np.testing.assert_allclose(r.per_image_nme, expect, rtol=1e-5)
    assert r.nme2d["0-30"] == pytest.approx(expect[0], rel=1e-5)  # bins by the teacher's yaw
    assert r.nme2d["30-60"] == pytest.approx(expect[1], rel=1e-5) and r.nme2d["60-90"] is None
    assert r.pose_mae == pytest.approx({"yaw": 2.0, "pitch": 1.0, "roll": 4.0, "mean": 7 / 3}, rel=1e-5)
    (tmp_path / "teacher_3ddfa_v2_mb05.npz").unlink()
    with pytest.raises(FileNotFoundError, match="teacher labels are missing"):
        ev.load_ground_truth("aflw19k-val-teacher", tmp_path)


def test_cli_compare_scores_each_file_and_keeps_json_for_the_main_one(format_samples, tmp_path, capsys):
    data = format_samples / "aflw2000_3d"
    gt = ev.load_ground_truth("aflw2000-3d", data)
    ev.save_predictions(tmp_path / "a.npz", _aflw2000_preds(gt, shift=(3.0, 4.0)))
    ev.save_predictions(tmp_path / "b.npz", _aflw2000_preds(gt, shift=(6.0, 8.0), drop=0))
    rc = main(["--predictions", str(tmp_path / "a.npz"), "--label", "mine", "--compare", f"other={tmp_path / 'b.npz'}",
               "--compare", str(tmp_path / "a.npz"), "--dataset", "aflw2000-3d", "--data", str(data),
               "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "ced.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "== mine" in out and "== other" in out and "== a\n" in out
    assert out.count("protocol aflw2000-3d") == 3 and "image00002.jpg" in out.split("== other")[1]
    # paired difference on the images both scored: b is 5 px further off than a on the two it kept
    size = gt_box_size(gt.lm68)[1:]
    line = [ln for ln in out.split("== other")[1].splitlines() if ln.startswith("NME minus mine's")][0]
    assert f"on the 2 images both scored: {(5.0 / size * 100).mean():+.3f} points" in line
    assert "on the 3 images both scored: +0.000 points (95 % paired-bootstrap interval +0.000 to +0.000)" in out
    j = json.loads((tmp_path / "out.json").read_text())
    assert j["failures"] == 0  # the main result's, not the compared file's
    expect = (5.0 / gt_box_size(gt.lm68) * 100).mean()
    assert j["nme2d"]["all"] == pytest.approx(expect)
    assert (tmp_path / "ced.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["--predictions", str(tmp_path / "a.npz"), "--compare", "x=", "--dataset", "aflw2000-3d",
                 "--data", str(data)]) == 2
    assert "expected [LABEL=]PRED.npz" in capsys.readouterr().err
    # a bad comparison file fails before the model is opened (else the error would name model.onnx)
    assert main([str(tmp_path / "model.onnx"), "--compare", str(tmp_path / "missing.npz"), "--dataset",
                 "aflw2000-3d", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "missing.npz" in err and "model.onnx" not in err


def test_paired_bootstrap_interval():
    from fa3d.data.evaluation.metrics import paired_bootstrap

    a = np.linspace(2.0, 6.0, 200)
    d, lo, hi = paired_bootstrap(a, a + 0.5)
    assert (d, lo, hi) == pytest.approx((0.5, 0.5, 0.5))  # a constant shift has no spread
    rng = np.random.default_rng(3)
    noise = rng.normal(0.2, 1.0, 400)
    d, lo, hi = paired_bootstrap(a.repeat(2), a.repeat(2) + noise)
    se = noise.std() / np.sqrt(400)
    assert d == pytest.approx(noise.mean()) and lo < d < hi
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)  # the normal-theory width
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(a, a[:-1])


def test_pose_from_landmarks_and_blend(format_samples):
    gt = ev.load_ground_truth("aflw2000-3d", format_samples / "aflw2000_3d")
    preds = _aflw2000_preds(gt)  # pose off by (1, -2, 3) degrees
    fitted = ev.with_pose_from(preds, "landmarks")
    np.testing.assert_array_equal(fitted.landmarks, preds.landmarks)
    from fa3d.runtime import pose
    expect = pose.matrix_to_euler(pose.rotation_from_landmarks(preds.landmarks))
    np.testing.assert_allclose(fitted.pose, expect)
    blend = ev.with_pose_from(preds, "blend")
    gap = pose.geodesic_deg(pose.euler_to_matrix(preds.pose), pose.euler_to_matrix(fitted.pose))
    half = pose.geodesic_deg(pose.euler_to_matrix(preds.pose), pose.euler_to_matrix(blend.pose))
    np.testing.assert_allclose(half, gap / 2, atol=0.05)
    assert ev.with_pose_from(preds, "predicted") is preds
    with pytest.raises(ValueError, match="pose source"):
        ev.with_pose_from(preds, "magic")
    with pytest.raises(ValueError, match="holds one pose"):
        ev.with_pose_from(preds, "head")
