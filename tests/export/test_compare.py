"""Comparisons through Polygraphy (fa3d.export.compare): the tolerance mapping, the gate as a compare function,
batches, and ONNX Runtime runners on FP32 vs FP16 and FP32 vs INT8 Q/DQ models."""

from __future__ import annotations

import numpy as np
import pytest

from fa3d.export.compare import (ComparisonFailed, GateMetric, batches_of, callable_runner, compare_runners,
                                 gate_compare, onnxrt_runner)
from fa3d.export.parity import FP16_TOLERANCE

SIZE = 32
OUT = ("landmarks", "rotation", "dense", "confidence")


POINTS = np.random.default_rng(3).uniform(0, 30, (68, 3)).astype(np.float32)


def _const(name: str, value: float, calls: list | None = None):
    """A runner whose landmarks are fixed points shifted by ``value`` (other outputs constant), recording the batch
    sizes it sees."""

    def fn(x):
        if calls is not None:
            calls.append(len(x))
        b = len(x)
        return {"landmarks": np.tile(POINTS + np.float32(value), (b, 1, 1)), "rotation": np.tile(np.eye(3, dtype=np.float32),
                                                                                         (b, 1, 1)),
                "dense": np.zeros((b, 5, 3), np.float32), "confidence": np.ones((b, 1), np.float32)}
    return callable_runner(fn, name, input_size=SIZE)


def _feeds(n=5, sizes=(1, 4)):
    return batches_of(np.zeros((n, 3, SIZE, SIZE), np.float32), sizes, source="zeros")


def test_absolute_tolerance_alone_decides_rtol_is_zero():
    """Polygraphy fails an output only when atol AND rtol are exceeded: a 0.05 difference on values of 10000 is
    5e-6 relative, within Polygraphy's default rtol (1e-5); with rtol=0 the 0.01 atol decides: it fails."""
    tol = {k: 0.01 for k in OUT}
    res = compare_runners(_const("ref", 10000.0), _const("cand", 10000.05), _feeds(), tolerance=tol)
    assert not res.passed and set(res.failures) == {"landmarks"}
    assert res.max_abs["landmarks"] == pytest.approx(0.05, abs=2e-3)
    with pytest.raises(ComparisonFailed, match="landmarks"):
        res.raise_if_failed()
    ok = compare_runners(_const("ref", 10000.0), _const("cand", 10000.0), _feeds(), tolerance=tol)
    assert ok.passed and ok.failures == {}


def test_every_face_at_every_batch_size_reaches_the_runners():
    calls_ref, calls_cand = [], []
    res = compare_runners(_const("ref", 1.0, calls_ref), _const("cand", 1.0, calls_cand), _feeds(5, (1, 4, 16)),
                          tolerance={k: 1e-6 for k in OUT})
    assert calls_ref == calls_cand == [1, 1, 1, 1, 1, 4, 1, 5]
    assert res.faces == 5 and res.batches == (1, 4, 16) and res.source == "zeros"


def test_gate_compare_reads_nme_and_pose():
    gate = gate_compare(max_nme=1.0, max_pose_deg=1.5)
    same = compare_runners(_const("ref", 1.0), _const("cand", 1.0), _feeds(), gate=gate)
    assert same.passed and same.gate["NME %"]["value"] == 0.0
    assert bool(GateMetric("x", float("nan"), 1.0)) is False  # NaN fails


def test_fp32_vs_fp16_onnx_with_onnxrt_runners(tiny_onnx, tmp_path, rng):
    from fa3d.export.fp16 import make_fp16

    half = make_fp16(tiny_onnx, tmp_path / "model.fp16.onnx").path
    x = rng.uniform(-1, 1, (6, 3, SIZE, SIZE)).astype(np.float32)
    res = compare_runners(onnxrt_runner(tiny_onnx), onnxrt_runner(half), batches_of(x, (1, 6)),
                          tolerance=FP16_TOLERANCE.as_dict())
    assert res.passed and 0 < res.max_abs["landmarks"] < FP16_TOLERANCE.landmarks


def test_fp32_vs_int8_qdq_onnx_with_onnxrt_runners(tiny_onnx, tiny_int8_onnx, rng):
    """The Q/DQ model deviates (a 1e-4 px tolerance fails), and the gate reads the deviation."""
    x = rng.uniform(-1, 1, (6, 3, SIZE, SIZE)).astype(np.float32)
    feeds = batches_of(x, (1, 6))
    res = compare_runners(onnxrt_runner(tiny_onnx), onnxrt_runner(tiny_int8_onnx), feeds,
                          tolerance={k: 1e-4 for k in OUT}, gate=gate_compare(100.0, 180.0))
    assert res.max_abs["landmarks"] > 1e-4 and not res.passed and "landmarks" in res.failures
    assert res.gate["NME %"]["value"] > 0 and res.gate["pose deg"]["value"] >= 0
    strict = compare_runners(onnxrt_runner(tiny_onnx), onnxrt_runner(tiny_int8_onnx), feeds,
                             gate=gate_compare(0.0, 0.0))
    assert not strict.passed and "NME %" in strict.failures


def test_gate_reads_the_pose_the_runtime_reports():
    """The pose metric: a head rotation 10 degrees off fails the gate read on the head's pose."""
    def turned(x):
        out = _const("x", 1.0)._fn(x)
        c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
        out["rotation"] = np.tile(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32), (len(x), 1, 1))
        return out
    res = compare_runners(_const("ref", 1.0), callable_runner(turned, "turned", input_size=SIZE), _feeds(),
                          gate=gate_compare(max_nme=1.0, max_pose_deg=1.5, pose_source="head"))
    assert not res.passed and set(res.failures) == {"pose deg"} and res.gate["pose deg"]["value"] == pytest.approx(10 / 3, rel=1e-3)  # mean of yaw, pitch, roll


def test_the_gate_and_the_maxima_cover_every_face_of_every_batch():
    """Iterations are joined before comparing: one face off among five, fed one per batch, shows in the mean."""
    def one_off(x):
        out = _const("x", 1.0)._fn(x)
        out["landmarks"] = out["landmarks"] + (x[:, 0, 0, 0] == 0)[:, None, None].astype(np.float32) * 3.0
        return out
    x = np.stack([np.full((3, SIZE, SIZE), i, np.float32) for i in range(5)])
    res = compare_runners(_const("ref", 1.0), callable_runner(one_off, "one off", input_size=SIZE),
                          batches_of(x, (1,)), tolerance={k: 1e-6 for k in OUT}, gate=gate_compare(100.0, 180.0))
    assert res.max_abs["landmarks"] == pytest.approx(3.0)
    single = compare_runners(_const("ref", 1.0), callable_runner(one_off, "one off", input_size=SIZE),
                             batches_of(x[:1], (1,)), gate=gate_compare(100.0, 180.0))
    assert single.gate["NME %"]["value"] > 0
    assert res.gate["NME %"]["value"] == pytest.approx(single.gate["NME %"]["value"] / 5, rel=1e-6)
