"""Real TensorRT builds compared with ONNX Runtime: run unchanged on a Jetson or desktop GPU.

Skipped here (no TensorRT, no GPU): the ``gpu`` marker's skip logic lives in tests/conftest.py. The engine runs
through Polygraphy's ``TrtRunner`` (its own CUDA handling: no pycuda context to release in the right order) and
through the runtime's ``TrtBackend`` (pycuda), both compared with ONNX Runtime by Polygraphy's Comparator.
"""

from __future__ import annotations

import pytest

from fa3d.export.compare import backend_runner, batches_of, compare_runners, onnxrt_runner
from fa3d.export.parity import FP16_TOLERANCE, TRT_FP32_TOLERANCE, synthetic_crops
from fa3d.export.trt_build import FIRST_STRONGLY_TYPED, BatchProfile, BuildOptions, build_engine
from fa3d.runtime.metadata import read_sidecar

pytestmark = pytest.mark.gpu


def _trt_runner(engine_path, name):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))), name=name)


@pytest.mark.parametrize("precision, tol", [("fp32", TRT_FP32_TOLERANCE), ("fp16", FP16_TOLERANCE)])
def test_real_engine_build_and_parity(tmp_path, tiny_onnx, precision, tol):
    from packaging.version import Version

    import tensorrt as trt

    from fa3d.export.steps import choose_build_source

    src, prec = choose_build_source(tiny_onnx, precision, trt.__version__, lambda msg: None)
    res = build_engine(src, tmp_path / "model.plan", BuildOptions(
        precision=prec, batch=BatchProfile(1, 4, 8), workspace_mb=256, timing_cache=tmp_path / "timing.cache"))
    meta = read_sidecar(res.path)
    assert meta.format == "tensorrt" and meta.engine["tensorrt_version"] == trt.__version__
    assert res.plan.strongly_typed is (Version(trt.__version__) >= FIRST_STRONGLY_TYPED)  # from 10.12
    crops = synthetic_crops(meta.preprocess, n_faces=2)
    feeds = batches_of(crops.inputs, (1, 4, 8), source=crops.source)
    for runner in (_trt_runner(res.path, f"polygraphy TrtRunner {prec}"),
                   backend_runner(res.path, f"fa3d TrtBackend {prec}")):
        report = compare_runners(onnxrt_runner(tiny_onnx), runner, feeds, tolerance=tol.as_dict())
        assert report.passed, report.summary()
    # a second build reuses the timing cache written by the first
    again = build_engine(src, tmp_path / "model2.plan", BuildOptions(
        precision=prec, batch=BatchProfile(1, 4, 8), workspace_mb=256, timing_cache=tmp_path / "timing.cache"))
    assert again.timing_cache_reused


def test_real_int8_engine_runs_int8_layers(tmp_path, tiny_onnx, tiny_int8_onnx):
    from fa3d.export.engine_inspect import layer_precisions
    from fa3d.export.parity import INT8_SAME_MODEL_TOLERANCE

    res = build_engine(tiny_int8_onnx, tmp_path / "model.int8.plan", BuildOptions(precision="int8"))
    assert layer_precisions(res.path).get("int8", 0) > 0
    crops = synthetic_crops(read_sidecar(res.path).preprocess, n_faces=2)
    report = compare_runners(onnxrt_runner(tiny_int8_onnx), backend_runner(res.path),
                             batches_of(crops.inputs, (1, 4), source=crops.source),
                             tolerance=INT8_SAME_MODEL_TOLERANCE.as_dict())
    assert report.passed, report.summary()
