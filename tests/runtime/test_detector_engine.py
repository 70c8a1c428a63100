"""Where the detector's network runs (fa3d.runtime.detector_engine): its sidecar, the choice for a model, and its
TensorRT session against THE STAND-IN (the stand-in "engine" runs the detector's ONNX with ONNX Runtime)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.helpers.trt_standin import Gpu

from fa3d.runtime.default_model import asset_path
from fa3d.runtime.detector_engine import (DETECTOR_ENGINE, DetectorArtifactError, DetectorSidecar, OrtDetectorSession,
                                          TrtDetectorSession, detector_session_for, read_detector_sidecar,
                                          write_detector_sidecar)

ONNX = asset_path("detector/blazeface_short_range.onnx")


def test_sidecar_round_trip_and_refusals(tmp_path):
    p = tmp_path / "det.onnx"
    side = DetectorSidecar(format="onnx", source_sha256="ab" * 32)
    write_detector_sidecar(p, side)
    assert read_detector_sidecar(p) == side
    d = json.loads((tmp_path / "det.onnx.json").read_text())
    d["outputs"] = ["boxes"]
    (tmp_path / "det.onnx.json").write_text(json.dumps(d))
    with pytest.raises(DetectorArtifactError, match="outputs"):
        read_detector_sidecar(p)
    with pytest.raises(DetectorArtifactError, match="sidecar is missing"):
        read_detector_sidecar(tmp_path / "other.onnx")


def test_the_choice_for_a_model(tmp_path):
    assert detector_session_for(tmp_path / "model.onnx", "blazeface").description == "blazeface (onnxruntime cpu)"
    assert detector_session_for(tmp_path / "model.plan", "blazeface").session is None  # nothing beside it
    assert detector_session_for(tmp_path / "model.plan", "haar").backend == "opencv"
    with pytest.raises(DetectorArtifactError, match="not found"):
        detector_session_for(tmp_path / "model.plan", "blazeface", tmp_path / "missing.plan")
    with pytest.raises(DetectorArtifactError, match="--detector is haar"):
        detector_session_for(tmp_path / "model.plan", "haar", tmp_path / "x.plan")


@pytest.mark.skipif(not ONNX.is_file(), reason="no shipped detector")
def test_trt_session_matches_onnxruntime_and_splits_large_batches(tmp_path, monkeypatch):
    pytest.importorskip("polygraphy")
    from fa3d.export.detector_step import build_detector_engine, write_detector_onnx

    gpu = Gpu("10.3.0").install(monkeypatch)
    onnx_path = write_detector_onnx(tmp_path)
    built = build_detector_engine(onnx_path, "10.3.0", workspace_mb=256)
    assert built.path.name == DETECTOR_ENGINE and read_detector_sidecar(built.path).engine["profile"]["max"][0] == 32
    choice = detector_session_for(tmp_path / "model.plan", "blazeface")
    assert choice.backend == "tensorrt" and isinstance(choice.session, TrtDetectorSession)
    x = np.random.default_rng(0).uniform(-1, 1, (40, 3, 128, 128)).astype(np.float32)
    reg, cls = choice.session.run(x)
    ref_reg, ref_cls = OrtDetectorSession(onnx_path).run(x)
    np.testing.assert_allclose(reg, ref_reg, atol=1e-5)
    np.testing.assert_allclose(cls, ref_cls, atol=1e-5)
    assert [e[2] for e in gpu.log if e[0] == "execute_async_v3"] == [32, 8], "split at the profile's largest batch"
    choice.session.close()
    assert ("detach", "destroyed") in gpu.log
