"""Q/DQ insertion (what ONNX Runtime emits with our options) and the lint on good and broken models."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from fa3d.calibration.lint import QdqLintError, lint_model, lint_qdq  # noqa: E402
from fa3d.calibration.qdq import QdqOptions, quantizable_nodes, quantize_qdq  # noqa: E402


@pytest.fixture(scope="module")
def int8_path(tiny_onnx, synthetic_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "model.int8.onnx"
    return quantize_qdq(tiny_onnx, out, synthetic_set.inputs, QdqOptions(method="minmax"))


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_methods_give_trt_style_qdq(method, tiny_onnx, synthetic_set, tmp_path):
    out = quantize_qdq(tiny_onnx, tmp_path / "m.onnx", synthetic_set.inputs[:16], QdqOptions(method=method))
    s = lint_qdq(out)
    assert s.opset == 17 and s.weight_pairs == len(quantizable_nodes(tiny_onnx)) == 8


def test_structure(int8_path):
    m = onnx.load(str(int8_path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            x, w = n.input[0], n.input[1]
            assert producer[x].op_type == "DequantizeLinear", n.name  # activation input quantized
            dq = producer[w]
            q = producer[dq.input[0]]
            assert dq.op_type == "DequantizeLinear" and q.op_type == "QuantizeLinear", n.name
            assert inits[q.input[0]].dtype == np.float32  # float weight -> Q -> DQ
            assert inits[dq.input[1]].shape == (inits[q.input[0]].shape[0],)  # per channel
            assert len(n.input) < 3 or inits[n.input[2]].dtype == np.float32  # float bias
    quantized = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    assert "/lm/Gemm_output_0" not in quantized and "/rot/Gemm_output_0" not in quantized  # heads' outputs stay float
    zps = [inits[n.input[2]] for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(z.dtype == np.int8 and not z.any() for z in zps)


def test_nodes_to_exclude_keep_layer_float(tiny_onnx, synthetic_set, tmp_path):
    out = quantize_qdq(tiny_onnx, tmp_path / "x.onnx", synthetic_set.inputs[:16],
                       QdqOptions(method="minmax", nodes_to_exclude=("/lm/Gemm",)))
    m = onnx.load(str(out))
    producer = {o: n for n in m.graph.node for o in n.output}
    lm = next(n for n in m.graph.node if n.name == "/lm/Gemm")
    assert lm.input[1] == "lm.weight" and producer.get(lm.input[0]).op_type == "Relu"
    lint_qdq(out)
    with pytest.raises(ValueError, match="not quantizable"):
        quantize_qdq(tiny_onnx, tmp_path / "y.onnx", synthetic_set.inputs[:4],
                     QdqOptions(nodes_to_exclude=("/nope",)))


def _first(m, op, pred=lambda n: True):
    return next(n for n in m.graph.node if n.op_type == op and pred(n))


def _set_init(m, name, array):
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    m.graph.initializer.append(numpy_helper.from_array(array, name))


def test_lint_names_nonzero_zero_point(int8_path):
    m = onnx.load(str(int8_path))
    q = _first(m, "QuantizeLinear", lambda n: n.input[0] == "input")
    _set_init(m, q.input[2], np.array(3, np.int8))
    with pytest.raises(QdqLintError, match=rf"QuantizeLinear '{q.name}': zero point \[3\] is not 0"):
        lint_model(m)


def test_lint_accepts_prequantized_int8_weights_and_checks_them(int8_path):
    """TensorRT's explicit quantization takes pre-quantized int8 weights followed by a DequantizeLinear (rule 5)."""
    m = onnx.load(str(int8_path))
    dq = _first(m, "DequantizeLinear", lambda n: n.input[0] == "fc.weight_QuantizeLinear_Output")
    shape = next(numpy_helper.to_array(t).shape for t in m.graph.initializer if t.name == "fc.weight")
    _set_init(m, "fc.weight_int8", np.ones(shape, np.int8))
    dq.input[0] = "fc.weight_int8"
    summary = lint_model(m)
    assert summary.prequantized_weights == 1
    _set_init(m, "fc.weight_int8", np.ones(shape, np.uint8))
    with pytest.raises(QdqLintError, match=rf"DequantizeLinear '{dq.name}': fed directly by the uint8 initialiser"):
        lint_model(m)
    _set_init(m, "fc.weight_int8", np.ones(shape, np.int8))
    _set_init(m, dq.input[1], np.array(0.01, np.float32))
    with pytest.raises(QdqLintError, match=rf"DequantizeLinear '{dq.name}': weight 'fc.weight_int8' .* per tensor"):
        lint_model(m)


def test_lint_names_per_tensor_weights(int8_path):
    m = onnx.load(str(int8_path))
    q = _first(m, "QuantizeLinear", lambda n: n.input[0] == "c3.weight")
    _set_init(m, q.input[1], np.array(0.01, np.float32))
    _set_init(m, q.input[2], np.array(0, np.int8))
    with pytest.raises(QdqLintError, match=rf"QuantizeLinear '{q.name}': weight 'c3.weight' .* per tensor"):
        lint_model(m)


def test_lint_names_wrong_axis_and_bad_scale(int8_path):
    m = onnx.load(str(int8_path))
    q = _first(m, "QuantizeLinear", lambda n: n.input[0] == "c3.weight")
    next(a for a in q.attribute if a.name == "axis").i = 1
    with pytest.raises(QdqLintError, match=rf"'{q.name}': weight 'c3.weight' is quantized on axis 1"):
        lint_model(m)
    m = onnx.load(str(int8_path))
    q = _first(m, "QuantizeLinear", lambda n: n.input[0] == "input")
    _set_init(m, q.input[1], np.array(-1.0, np.float32))
    with pytest.raises(QdqLintError, match="positive"):
        lint_model(m)


def test_lint_refuses_opset_18(int8_path):
    m = onnx.load(str(int8_path))
    next(o for o in m.opset_import if o.domain in ("", "ai.onnx")).version = 18
    with pytest.raises(QdqLintError, match="opset 18 > 17"):
        lint_model(m)


def test_lint_names_int32_bias_dequantize(int8_path):
    m = onnx.load(str(int8_path))
    gemm = _first(m, "Gemm", lambda n: n.name == "/cf/Gemm")
    _set_init(m, "cf.bias_int32", np.array([5], np.int32))
    _set_init(m, "cf.bias_scale", np.array(1e-4, np.float32))
    _set_init(m, "cf.bias_zp", np.array(0, np.int32))
    m.graph.node.append(helper.make_node("DequantizeLinear", ["cf.bias_int32", "cf.bias_scale", "cf.bias_zp"],
                                         ["cf.bias_dq"], name="cf.bias_DequantizeLinear"))
    gemm.input[2] = "cf.bias_dq"
    with pytest.raises(QdqLintError) as e:
        lint_model(m)
    assert "DequantizeLinear 'cf.bias_DequantizeLinear': an int32 bias DequantizeLinear" in str(e.value)


def test_lint_refuses_float_model(tiny_onnx):
    with pytest.raises(QdqLintError, match="no QuantizeLinear"):
        lint_qdq(tiny_onnx)


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_take_faces_that_do_not_fill_the_last_batch(method, tiny_onnx, synthetic_set, tmp_path):
    """90 faces (not a multiple of 8) crashed the histogram calibrators with 'inhomogeneous shape'."""
    x = np.concatenate([synthetic_set.inputs, synthetic_set.inputs[:26] * 0.9]).astype(np.float32)
    assert len(x) == 90
    out = quantize_qdq(tiny_onnx, tmp_path / "p.onnx", x, QdqOptions(method=method))
    assert lint_qdq(out).weight_pairs == 8


def test_equal_batch():
    from fa3d.calibration.qdq import equal_batch

    assert [equal_batch(n, 8) for n in (96, 90, 97, 5, 1)] == [8, 6, 1, 5, 1]
