"""The accuracy gate: metrics, make_int8 end to end, the one-pass ranking and greedy exclusion, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from fa3d.calibration.calibset import save_calibration_set  # noqa: E402
from fa3d.calibration.gate import Gate, ValidationData, compare, nme_percent, validation_from_faces  # noqa: E402
from fa3d.calibration.int8 import make_int8  # noqa: E402
from fa3d.calibration.lint import lint_qdq  # noqa: E402
from fa3d.runtime.metadata import read_sidecar  # noqa: E402
from fa3d.runtime.pose import euler_to_matrix  # noqa: E402

REPORT_KEYS = {"passed", "written", "method", "gate", "calibration", "validation", "initial", "ranking",
               "excluded_layers", "final", "speed_cpu", "greedy_steps", "fp32_sha256"}


def test_nme_of_a_known_shift():
    ref = np.zeros((2, 68, 3))
    ref[:, :, 0] = np.linspace(0, 40, 68)
    ref[:, :, 1] = np.linspace(0, 10, 68)  # box 40 x 10 -> sqrt = 20
    pred = ref.copy()
    pred[0, :, 0] += 1.0
    pred[1, :, :2] += 3.0  # distance 3*sqrt(2)
    np.testing.assert_allclose(nme_percent(pred, ref), [100 / 20, 100 * 3 * np.sqrt(2) / 20])


def test_compare_fp32_and_label_references():
    n = 4
    lm = np.random.default_rng(0).uniform(0, 30, (n, 68, 3))
    rot = euler_to_matrix(np.tile([10.0, 0, 0], (n, 1)))
    fp32 = {"landmarks": lm, "rotation": rot}
    int8 = {"landmarks": lm + [0.3, 0, 0], "rotation": euler_to_matrix(np.tile([10.5, 0, 0], (n, 1)))}
    c = compare(fp32, int8, pose_source="head")
    assert c.reference == "fp32" and c.nme_loss == pytest.approx(c.nme_vs_fp32) and c.nme_loss > 0
    assert c.pose_loss == pytest.approx(0.5 / 3, abs=1e-6)  # mean |yaw, pitch, roll difference|
    assert (c.nme_reference, c.pose_reference) == ("fp32", "fp32")
    gt = compare(fp32, int8, landmarks=lm, ypr=np.tile([10.0, 0, 0], (n, 1)), pose_source="head")
    assert gt.reference == "labels" and gt.nme_gt_fp32 == pytest.approx(0, abs=1e-9)
    assert gt.nme_loss == pytest.approx(gt.nme_gt_int8) and gt.pose_loss == pytest.approx(0.5 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="labels"):
        compare(fp32, int8, reference="labels")
    # landmark labels only: NME is a loss against labels, pose a deviation from FP32, each with its threshold
    mixed = compare(fp32, int8, landmarks=lm, pose_source="head")
    assert (mixed.nme_reference, mixed.pose_reference) == ("labels", "fp32")
    from fa3d.calibration.gate import holds, thresholds
    g = Gate(max_nme_increase=1e9, max_pose_increase_deg=0.0, max_pose_deviation_deg=0.2)
    assert thresholds(mixed, g) == (1e9, 0.2) and holds(mixed, g)
    assert not holds(mixed, Gate(max_nme_increase=1e9, max_pose_deviation_deg=0.1))


def test_gate_scores_the_pose_the_runtime_reports():
    """Default: the rotation fitted to the landmarks (the runtime's default pose), not the pose head's."""
    from fa3d.runtime.pose import image_to_view, matrix_to_euler, rotation_from_landmarks
    from fa3d.runtime.schema import mean_shape
    n = 3
    r_true = euler_to_matrix(np.tile([20.0, 5.0, 0.0], (n, 1)))
    lm = image_to_view(np.einsum("nij,kj->nki", r_true, mean_shape()) * 50 + 60)  # view <-> image: an involution
    np.testing.assert_allclose(matrix_to_euler(rotation_from_landmarks(lm)), np.tile([20.0, 5.0, 0.0], (n, 1)),
                               atol=1e-6)
    r_turned = euler_to_matrix(np.tile([26.0, 5.0, 0.0], (n, 1)))
    lm_turned = image_to_view(np.einsum("nij,kj->nki", r_turned, mean_shape()) * 50 + 60)
    fp32 = {"landmarks": lm, "rotation": r_true}
    head_only = {"landmarks": lm, "rotation": euler_to_matrix(np.tile([50.0, 0, 0], (n, 1)))}
    assert compare(fp32, head_only).pose_loss == pytest.approx(0, abs=1e-6)  # the head is not what is reported
    assert compare(fp32, head_only, pose_source="head").pose_loss > 5
    assert compare(fp32, {"landmarks": lm_turned, "rotation": r_true}).pose_loss == pytest.approx(2.0, abs=1e-3)
    with pytest.raises(ValueError, match="pose source"):
        Gate(pose_source="teacher")


@pytest.mark.parametrize("nme_ref,pose_ref,nme_max,pose_max", [
    ("labels", "labels", 0.1, 0.3), ("fp32", "fp32", 1.0, 1.5), ("labels", "fp32", 0.1, 1.5), ("fp32", "labels", 1.0, 0.3)])
def test_default_gate_thresholds_and_which_one_applies(nme_ref, pose_ref, nme_max, pose_max):
    """The documented gate: against labels at most +0.1 NME points and +0.3 deg pose MAE; against FP32 at most
    1.0 points and 1.5 deg of deviation; each metric read against its own reference; both must hold."""
    from fa3d.calibration.gate import Comparison, holds

    def c(nme, pose):
        return Comparison(nme_vs_fp32=0.0, pose_geodesic_vs_fp32=0.0, ypr_mae_vs_fp32=(0.0, 0.0, 0.0),
                          nme_loss=nme, pose_loss=pose, nme_reference=nme_ref, pose_reference=pose_ref)

    gate = Gate()
    assert holds(c(nme_max, pose_max), gate) and holds(c(-1.0, -1.0), gate)  # at the limit; INT8 better
    assert not holds(c(nme_max * 1.01, 0.0), gate)
    assert not holds(c(0.0, pose_max * 1.01), gate)


def test_deviation_bounds_the_loss_from_above(rng):
    """Whatever the labels, |loss against labels| <= deviation from FP32 (per face, up to the normalising box)."""
    n = 50
    gt = rng.uniform(20, 100, (n, 68, 3))
    f = {"landmarks": gt + rng.normal(0, 2, gt.shape), "rotation": euler_to_matrix(rng.uniform(-60, 60, (n, 3)))}
    ypr = rng.uniform(-60, 60, (n, 3))
    from fa3d.runtime.pose import matrix_to_euler
    i = {"landmarks": f["landmarks"] + rng.normal(0, 1, gt.shape),
         "rotation": euler_to_matrix(matrix_to_euler(f["rotation"]) + rng.normal(0, 1, (n, 3)))}
    c = compare(f, i, landmarks=gt, ypr=ypr, pose_source="head")
    dev = compare(f, i, pose_source="head")
    assert abs(c.pose_loss) <= dev.pose_loss + 1e-9
    assert abs(c.nme_loss) <= dev.nme_loss * 1.1  # boxes of FP32's landmarks vs the labels' differ slightly


def _check_report(report):
    assert REPORT_KEYS <= set(report)
    assert report["speed_cpu"]["fp32"]["median_ms"] > 0 and report["speed_cpu"]["int8"]["median_ms"] > 0
    for k in ("nme_loss", "pose_loss", "nme_vs_fp32", "pose_geodesic_vs_fp32"):
        assert np.isfinite(report["final"][k])


def test_loose_gate_passes_and_writes(tiny_onnx, synthetic_set, tmp_path):
    calib = save_calibration_set(synthetic_set, tmp_path / "calib.npz")
    out, rep = tmp_path / "out" / "model.int8.onnx", tmp_path / "report.json"
    res = make_int8(tiny_onnx, out, calib=calib, method="minmax", report_path=rep,
                    gate=Gate(max_nme_increase=100, max_pose_increase_deg=180, bench_runs=5))
    assert res.passed and out.is_file() and res.path == out
    assert lint_qdq(out).opset == 17
    meta = read_sidecar(out)
    assert meta.precision == "int8" and meta.source_sha256 == res.report["fp32_sha256"]
    report = json.loads(rep.read_text())
    _check_report(report)
    assert report["ranking"] == [] and report["excluded_layers"] == []
    assert report["validation"]["count"] == 16 and report["calibration"]["count"] == 48  # held out every 4th
    assert report["final"]["reference"] == "labels"  # the synthetic set carries labels


def test_tight_gate_ranks_in_one_pass_and_excludes(tiny_onnx, synthetic_set, tmp_path, monkeypatch):
    import fa3d.calibration.int8 as int8_mod
    from fa3d.calibration import qdq

    calls = []
    real = qdq.quantize_qdq
    monkeypatch.setattr(int8_mod, "quantize_qdq", lambda *a, **k: calls.append(k) or real(*a, **k))
    val = ValidationData(inputs=synthetic_set.inputs[::4])
    out = tmp_path / "model.int8.onnx"
    gate = Gate(max_nme_deviation=1e-9, max_pose_deviation_deg=1e-9, max_excluded=3, bench_runs=3)
    res = make_int8(tiny_onnx, out, calib=synthetic_set, val=val, method="minmax", gate=gate)
    r = res.report
    _check_report(r)
    assert not res.passed and not out.exists() and not r["written"]
    ranked = [x["layer"] for x in r["ranking"]]
    assert sorted(ranked) == sorted(["/c1/Conv", "/c2/Conv", "/c3/Conv", "/fc/Gemm", "/lm/Gemm", "/rot/Gemm",
                                     "/dn/Gemm", "/cf/Gemm"])
    scores = [x["score"] for x in r["ranking"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    # the dense and confidence heads do not feed landmarks or rotation: never worth keeping in float
    by = {x["layer"]: x for x in r["ranking"]}
    assert not by["/dn/Gemm"]["relevant"] and by["/dn/Gemm"]["score"] == 0 and by["/lm/Gemm"]["relevant"]
    assert by["/c1/Conv"]["activation_noise"] > 0 and by["/c1/Conv"]["weight_noise"] > 0
    steps = r["greedy_steps"]
    assert [s["layer"] for s in steps] == ranked[:3]  # tried in the ranking's order
    assert r["excluded_layers"] == [s["layer"] for s in steps if s["kept"]]  # kept only when the loss fell
    # one quantization with calibration, then one re-quantization per greedy step, none per layer
    assert len(calls) == 1 + 3 and len(steps) == 3
    if r["excluded_layers"]:
        assert r["final_badness"] < max(r["initial"]["nme_loss"], r["initial"]["pose_loss"]) / 1e-9
    forced = make_int8(tiny_onnx, out, calib=synthetic_set, val=val, method="minmax", gate=gate, force=True)
    assert not forced.passed and out.is_file() and forced.report["forced"]


def test_greedy_keeps_a_layer_in_float_only_when_it_helps():
    from pathlib import Path

    from fa3d.calibration.gate import Comparison, greedy_exclude

    loss = {(): 3.0, ("a",): 2.0, ("a", "b"): 2.5, ("a", "c"): 0.5}

    def quantize(excluded):
        return Path("+".join(excluded) or "none")

    def evaluate_path(path):
        key = () if path.name == "none" else tuple(path.name.split("+"))
        return Comparison(nme_vs_fp32=loss[key], pose_geodesic_vs_fp32=0, ypr_mae_vs_fp32=(0, 0, 0),
                          nme_loss=loss[key], pose_loss=0.0)

    excluded, c, path, steps = greedy_exclude(quantize, evaluate_path, ["a", "b", "c", "d"],
                                              Gate(max_nme_deviation=1.0, max_excluded=4))
    assert excluded == ("a", "c") and c.nme_loss == 0.5 and path.name == "a+c"
    assert [(s["layer"], s["kept"]) for s in steps] == [("a", True), ("b", False), ("c", True)]


def test_validation_spread_keeps_labels_aligned(synthetic_set):
    v = ValidationData.from_set(synthetic_set)
    s = v.spread(10)
    assert len(s.inputs) == 10 and s.landmarks.shape == (10, 68, 3)
    np.testing.assert_array_equal(s.inputs[-1], v.inputs[-1])
    np.testing.assert_array_equal(s.landmarks[0], v.landmarks[0])
    assert v.spread(1000) is v


def test_gate_holds_after_exclusion(tiny_onnx, synthetic_set, tmp_path):
    """A gate that the all-INT8 model fails and the noisiest layer in float meets: one exclusion fixes it."""
    val = ValidationData(inputs=synthetic_set.inputs[::4])
    probe = make_int8(tiny_onnx, tmp_path / "p.onnx", calib=synthetic_set, val=val, method="minmax",
                      gate=Gate(max_nme_deviation=1e-9, max_pose_deviation_deg=1e-9, max_excluded=1, bench_runs=1))
    step = probe.report["greedy_steps"][0]
    initial = probe.report["initial"]
    gate = Gate(max_nme_deviation=step["nme_loss"] * 1.001 + 1e-9,
                max_pose_deviation_deg=step["pose_loss"] * 1.001 + 1e-9, bench_runs=1)
    assert initial["nme_loss"] > gate.max_nme_deviation or initial["pose_loss"] > gate.max_pose_deviation_deg
    res = make_int8(tiny_onnx, tmp_path / "g.onnx", calib=synthetic_set, val=val, method="minmax",
                    gate=gate)
    assert res.passed and res.report["excluded_layers"] == step["excluded"] and (tmp_path / "g.onnx").is_file()
    assert not res.report["initial_holds"]
    block = read_sidecar(tmp_path / "g.onnx").model["int8"]
    assert block["gate"]["passed"] and block["recipe"]["excluded_layers"] == step["excluded"]
    assert block["fp32_sha256"] == res.report["fp32_sha256"]


def test_calibration_data_is_required(tiny_onnx, tmp_path):
    from fa3d.calibration.int8 import CalibrationRequired

    with pytest.raises(CalibrationRequired, match="--calib"):
        make_int8(tiny_onnx, tmp_path / "x.onnx")
    with pytest.raises(FileNotFoundError, match="calibration data not found"):
        make_int8(tiny_onnx, tmp_path / "x.onnx", calib=tmp_path / "missing.mp4")


def test_labelled_validation_from_faces(tiny_onnx, preprocess_config, tmp_path, synthetic_set):
    from fa3d.data.datasets.synthetic import synth_faces
    faces = synth_faces(8, seed=11, size=96)
    val = validation_from_faces([(f.image, f.box) for f in faces], preprocess_config,
                                landmarks=[f.landmarks for f in faces], ypr=[f.ypr for f in faces])
    assert val.landmarks.shape == (8, 68, 3) and val.ypr.shape == (8, 3)
    res = make_int8(tiny_onnx, tmp_path / "l.onnx", calib=synthetic_set, val=val, method="minmax",
                    gate=Gate(max_nme_increase=1e6, max_pose_increase_deg=1e6, bench_runs=1))
    f = res.report["final"]
    assert f["reference"] == "labels" and f["nme_gt_fp32"] > 0 and f["pose_mae_gt_int8"] > 0
    assert f["nme_loss"] == pytest.approx(f["nme_gt_int8"] - f["nme_gt_fp32"])


def test_refuses_wrong_preprocessing(tiny_onnx, tmp_path, synthetic_set):
    from fa3d.runtime.preprocess import PreprocessConfig
    from fa3d.calibration.calibset import CalibrationSet, CalibrationSetError
    other = CalibrationSet(inputs=np.zeros((4, 3, 40, 40), np.float32), names=("a", "b", "c", "d"),
                           preprocess=PreprocessConfig(input_size=40), source="x")
    path = save_calibration_set(other, tmp_path / "other.npz")
    with pytest.raises(CalibrationSetError, match="another preprocessing"):
        make_int8(tiny_onnx, tmp_path / "o.onnx", calib=path)
