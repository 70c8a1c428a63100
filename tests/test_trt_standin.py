"""THE STAND-IN itself (tests/helpers/trt_standin.py) refuses what TensorRT's bindings refuse: without this, a test of fa3d's
TensorRT code could pass against a stand-in more permissive than TensorRT."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper
from tests.helpers.trt_standin import Gpu, plumbing_plan


@pytest.fixture
def tiny(tmp_path):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["out"], name="relu")], "g", [x], [y])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def _network(gpu, path, flags=None):
    trt = gpu.trt
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    if flags is None:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if gpu.v.major < 10 else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt.Logger(trt.Logger.WARNING))
    return builder, network, parser, parser.parse_from_file(path)


def _profile(builder, name="input", batches=(1, 2, 4)):
    p = builder.create_optimization_profile()
    p.set_shape(name, *[(b, 3, 8, 8) for b in batches])
    return p


def test_builds_refused_like_tensorrt(tiny):
    gpu = Gpu("10.3.0", dla_cores=1)
    builder, network, _, ok = _network(gpu, tiny)
    assert ok
    config = builder.create_builder_config()
    assert builder.build_serialized_network(network, config) is None, "no optimization profile"
    config.add_optimization_profile(_profile(builder, "images"))
    assert builder.build_serialized_network(network, config) is None, "a profile for a wrong tensor name"
    config = builder.create_builder_config()
    config.add_optimization_profile(_profile(builder))
    assert builder.build_serialized_network(network, config) is not None
    config.set_flag(gpu.trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config) is None, "INT8 without Q/DQ or a calibrator"
    config = builder.create_builder_config()
    config.add_optimization_profile(_profile(builder))
    config.default_device_type, config.DLA_core = gpu.trt.DeviceType.DLA, 0
    assert builder.build_serialized_network(network, config) is None, "DLA with a dynamic profile"


def test_weak_typing_and_explicit_batch_per_version(tiny):
    gpu = Gpu("10.12.0")
    strong = 1 << int(gpu.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    builder, network, _, _ = _network(gpu, tiny, strong)
    config = builder.create_builder_config()
    config.add_optimization_profile(_profile(builder))
    config.set_flag(gpu.trt.BuilderFlag.FP16)
    assert builder.build_serialized_network(network, config) is None, "FP16 flag on a strongly typed network"
    assert not hasattr(Gpu("11.1").trt.BuilderFlag, "FP16")
    assert not _network(Gpu("8.6.1"), tiny, 0)[3], "8.6 parses ONNX into explicit batch networks only"
    dla = []
    for v in ("8.5.2", "10.7.0", "10.8.0", "11.4.0", "11.4.1", "11.5.0"):
        g = Gpu(v, dla_cores=2)
        dla.append(g.trt.Builder(g.trt.Logger()).num_DLA_cores)
    assert dla == [2, 2, 0, 0, 2, 0]


def test_runtime_refusals(monkeypatch):
    gpu = Gpu("11.1.0").install(monkeypatch)
    runtime = gpu.trt.Runtime(gpu.trt.Logger())
    runtime.DLA_core = 0  # exists in 11.x too
    assert runtime.deserialize_cuda_engine(plumbing_plan(8, 2, version="10.3.0")) is None, "another version"
    engine = runtime.deserialize_cuda_engine(plumbing_plan(8, 2, (1, 2, 4), version="11.1.0"))
    ctx = engine.create_execution_context()
    gpu.driver.Device(0).make_context()  # current on this thread
    assert ctx.execute_async_v3(0) is False, "before the input shape"
    assert ctx.set_input_shape("landmarks", (1, 3, 8, 8)) is False, "an output"
    assert ctx.set_input_shape("nope", (1, 3, 8, 8)) is False, "an unknown name"
    assert ctx.set_input_shape("input", (8, 3, 8, 8)) is False, "outside the profile"
    assert ctx.set_input_shape("input", (2, 3, 8, 8)) is True
    assert ctx.set_tensor_address("nope", 0x1000) is False
    assert ctx.execute_async_v3(0) is False, "before every address is set"
