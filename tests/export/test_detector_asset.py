"""The shipped BlazeFace ONNX is what export/detector_convert.py wrote and checked (opset, dynamic batch, hashes)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from fa3d.runtime.default_model import asset_path

onnx = pytest.importorskip("onnx")


def test_shipped_detector_onnx_matches_its_conversion_record():
    folder = asset_path("detector")
    model_path = folder / "blazeface_short_range.onnx"
    record = json.loads((folder / "conversion.json").read_text())
    assert hashlib.sha256(model_path.read_bytes()).hexdigest() == record["onnx_sha256"]
    assert record["max_abs_diff_regressors"] < 1e-3 and record["max_abs_diff_classificators"] < 1e-3
    assert record["box_iou"] >= 0.9 and record["source"].startswith("mediapipe==0.10.21:")
    m = onnx.load(str(model_path))
    onnx.checker.check_model(m)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) <= 17
    (inp,) = m.graph.input
    assert inp.name == "input" and [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == [
        "batch", 3, 128, 128]
    assert [o.name for o in m.graph.output] == ["regressors", "classificators"]


def test_shipped_detector_runs_a_batch():
    from fa3d.runtime.backends.onnxrt import cpu_session

    sess = cpu_session(asset_path("detector/blazeface_short_range.onnx"))
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 128, 128)).astype(np.float32)
    reg, cls = sess.run(["regressors", "classificators"], {"input": x})
    assert reg.shape == (3, 896, 16) and cls.shape == (3, 896, 1)
    one = sess.run(["regressors"], {"input": x[1:2]})[0]
    np.testing.assert_allclose(one[0], reg[1], atol=1e-4)
