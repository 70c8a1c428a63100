"""Real TensorRT builds and TensorRT-vs-ONNX-Runtime parity: run unchanged on a Jetson or desktop GPU.

Skipped here (no TensorRT, no GPU): the ``gpu`` marker's skip logic lives in tests/conftest.py. The
inference helper below uses pycuda explicitly (no pycuda.autoinit) and TensorRT's named-tensor API
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), common to TensorRT 8.5 to 11.
"""

from __future__ import annotations

import contextlib
import gc

import numpy as np
import pytest

from fa3d.export.parity import FP16_TOLERANCE, Tolerance, onnx_vs_runner, synthetic_crops
from fa3d.export.trt_build import BatchProfile, BuildOptions, build_engine
from fa3d.runtime.metadata import read_sidecar

pytestmark = pytest.mark.gpu

#: TensorRT FP32 may use TF32 tensor cores on Ampere and newer: looser than ONNX Runtime CPU FP32
TRT_FP32_TOLERANCE = Tolerance(landmarks=0.05, rotation=5e-3, dense=0.05, confidence=5e-3)


@contextlib.contextmanager
def _trt_runner(engine_path):
    """An inference function over a deserialised engine; on exit, the execution context, engine and runtime
    are released while the CUDA context is current, then the context is detached (current: destroyed).
    Popping first would release them without a context ("defaultAllocator ... invalid argument")."""
    import pycuda.driver as cuda
    import tensorrt as trt

    from fa3d.runtime.backends.trt import shared_logger

    cuda.init()
    ctx = cuda.Device(0).make_context()
    held: dict = {}
    try:
        held["runtime"] = trt.Runtime(shared_logger(trt))
        held["engine"] = held["runtime"].deserialize_cuda_engine(engine_path.read_bytes())
        held["context"] = held["engine"].create_execution_context()
        engine, context = held["engine"], held["context"]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]

        def run(x: np.ndarray) -> dict[str, np.ndarray]:
            stream = cuda.Stream()
            context.set_input_shape("input", x.shape)
            bufs, outs = [], {}
            for n in names:
                if n == "input":
                    host = np.ascontiguousarray(x, dtype=np.float32)
                else:
                    host = np.empty(tuple(context.get_tensor_shape(n)), dtype=np.float32)
                    outs[n] = host
                dev = cuda.mem_alloc(host.nbytes)
                bufs.append(dev)
                context.set_tensor_address(n, int(dev))
                if n == "input":
                    cuda.memcpy_htod_async(dev, host, stream)
            assert context.execute_async_v3(stream.handle)
            for n, dev in zip(names, bufs):
                if n != "input":
                    cuda.memcpy_dtoh_async(outs[n], dev, stream)
            stream.synchronize()
            for dev in bufs:
                dev.free()
            return outs

        yield run
    finally:
        for key in ("context", "engine", "runtime"):  # TensorRT's own order, with the context current
            held.pop(key, None)
        gc.collect()
        ctx.detach()


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
    assert res.plan.strongly_typed is (Version(trt.__version__) >= Version("11"))
    with _trt_runner(res.path) as run:
        report = onnx_vs_runner(tiny_onnx, run, f"TensorRT {trt.__version__} {prec}",
                                synthetic_crops(meta.preprocess, n_faces=2), tol)
    assert report.passed, report.summary()
    # a second build reuses the timing cache written by the first
    again = build_engine(src, tmp_path / "model2.plan", BuildOptions(
        precision=prec, batch=BatchProfile(1, 4, 8), workspace_mb=256, timing_cache=tmp_path / "timing.cache"))
    assert again.timing_cache_reused

