"""Both presets export to ONNX opset 17 inside the TensorRT-safe set; unsafe graphs are rejected by node."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
from fa3d.export.onnx_check import TRT_SAFE_OPS, UnsafeOperatorError, check_trt_safe  # noqa: E402
from fa3d.training import build_model  # noqa: E402

torch.set_num_threads(1)
OUTPUTS = ["landmarks", "rotation", "dense", "confidence"]


def _export(model, size, path, opset=17):
    x = torch.randn(1, 3, size, size)
    axes = {name: {0: "batch"} for name in ["input", *OUTPUTS]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                          output_names=OUTPUTS[:len(model(x))] if isinstance(model(x), dict) else ["out"],
                          dynamic_axes=axes if isinstance(model(x), dict) else {"input": {0: "batch"}})
    return onnx.load(str(path))


@pytest.mark.parametrize("preset", ["tiny", "edge"])
def test_export_is_trt_safe_and_matches_torch(preset, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = build_model(preset).eval()
    proto = _export(m, m.input_size, tmp_path / "m.onnx")
    check_trt_safe(proto)
    assert [o.name for o in proto.graph.output] == OUTPUTS
    assert {n.op_type for n in proto.graph.node} <= TRT_SAFE_OPS
    assert "Shape" not in {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(3, 3, m.input_size, m.input_size)).astype(np.float32)
    got = sess.run(None, {"input": x})  # batch 3: the batch axis is dynamic
    with torch.no_grad():
        ref = m(torch.from_numpy(x))
    for name, arr in zip(OUTPUTS, got):
        assert arr.shape == tuple(ref[name].shape)
        assert np.abs(arr - ref[name].numpy()).max() < 1e-3, name


@pytest.mark.slow
def test_paper_export_is_trt_safe(tmp_path):
    m = build_model("paper").eval()
    path = tmp_path / "paper.onnx"
    x = torch.zeros(1, 3, 256, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=OUTPUTS, dynamic_axes={n: {0: "batch"} for n in ["input", *OUTPUTS]})
    proto = onnx.load(str(path))
    check_trt_safe(proto)
    # the exporter leaves concatenated dims symbolic; ONNX shape inference makes them static
    proto = onnx.shape_inference.infer_shapes(proto)
    dims = {o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert dims["landmarks"][1:] == [68, 3] and dims["dense"][1:] == [468, 3]
    assert dims["rotation"][1:] == [3, 3] and dims["confidence"][1:] == [1]
    conv_ranks = {len(next(i for i in proto.graph.initializer if i.name == n.input[1]).dims)
                  for n in proto.graph.node if n.op_type == "Conv"}
    assert conv_ranks == {4, 5}  # Conv2d and the 3D branch's Conv3d


class _Einsum(nn.Module):
    def forward(self, x):
        return torch.einsum("bchw,bchw->bc", x, x)


class _Bicubic(nn.Module):
    def forward(self, x):
        return nn.functional.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)


class _BatchShapedReshape(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)  # exports Shape -> Gather -> Reshape with a run-time shape


@pytest.mark.parametrize("module, op", [(_Einsum(), "Einsum"), (_Bicubic(), "Resize"),
                                        (_BatchShapedReshape(), "Shape")])
def test_unsafe_graphs_are_rejected_naming_the_node(module, op, tmp_path):
    proto = _export(module, 8, tmp_path / "bad.onnx")
    bad = [n for n in proto.graph.node if n.op_type == op]
    assert bad
    with pytest.raises(UnsafeOperatorError) as e:
        check_trt_safe(proto)
    assert op in str(e.value) and bad[0].name in str(e.value)


def test_opset_above_17_is_rejected(tmp_path):
    m = build_model("tiny").eval()
    proto = _export(m, 64, tmp_path / "t.onnx")
    proto.opset_import[0].version = 18
    with pytest.raises(UnsafeOperatorError, match="opset 18"):
        check_trt_safe(proto)


def test_runtime_reduce_axes_are_rejected():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum_by_input")
    proto = helper.make_model(helper.make_graph([node], "g", [x, axes], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsafeOperatorError, match="sum_by_input"):
        check_trt_safe(proto)
