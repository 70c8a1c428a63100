"""CPU INT8 (U8S8 QOperator for ONNX Runtime's CPU kernels): the layout, the gate and the interleaved timing."""

from __future__ import annotations

import pytest

onnx = pytest.importorskip("onnx")

from fa3d.calibration.gate import Gate, ValidationData  # noqa: E402
from fa3d.runtime.preprocess import PreprocessConfig  # noqa: E402
from tests.helpers.calibration_model import SIZE, export_tiny_onnx, synthetic_calibration_set  # noqa: E402
from tools.cpu_int8 import measure, quantize_cpu  # noqa: E402


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("torch")
    return export_tiny_onnx(tmp_path_factory.mktemp("tiny") / "model.onnx", PreprocessConfig(input_size=SIZE))


@pytest.fixture(scope="module")
def synthetic_set():
    return synthetic_calibration_set(PreprocessConfig(input_size=SIZE))


def test_qoperator_u8s8_layout_and_figures(tiny_onnx, synthetic_set, tmp_path):
    out = quantize_cpu(tiny_onnx, tmp_path / "cpu.onnx", synthetic_set.inputs[:40], method="minmax",
                       reduce_range=True)
    m = onnx.load(str(out))
    ops = {n.op_type for n in m.graph.node}
    assert "QLinearConv" in ops and "QuantizeLinear" in ops  # QOperator: integer kernels, not Q/DQ pairs
    zps = [i for i in m.graph.initializer if i.name.endswith("_zero_point") and "quantized" not in i.name]
    assert any(z.data_type == onnx.TensorProto.UINT8 for z in zps)  # uint8 activations
    f = measure(tiny_onnx, out, ValidationData(inputs=synthetic_set.inputs[40:]), Gate(), rounds=2)
    assert f.fp32_ms > 0 and f.int8_ms > 0 and f.speedup == pytest.approx(f.fp32_ms / f.int8_ms)
    assert f.reference == "fp32" and f.worth_shipping == (f.passed_gate and f.speedup > 1)
