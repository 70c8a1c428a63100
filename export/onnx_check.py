"""The TensorRT-safe operator check: what TensorRT 8.5 to 11 all parse at opset 17 (:mod:`fa3d.runtime.policy`).

``check_trt_safe(model)`` raises :class:`UnsafeOperatorError` naming the first offending node.
"""

from __future__ import annotations

from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.policy import OPSET

onnx = lazy_import("onnx", extra="export")

TRT_SAFE_OPS: frozenset[str] = frozenset({
    # convolution and normalisation (2D and 3D)
    "Conv", "BatchNormalization",
    # activations
    "Relu", "PRelu", "HardSwish", "Sigmoid", "Softmax",
    # reductions (checked: constant axes)
    "ReduceSum", "ReduceMean",
    # linear algebra
    "MatMul", "Gemm",
    # trigonometry
    "Sin", "Cos", "Atan",
    # resampling (checked: nearest or linear only)
    "Resize",
    # layout
    "Concat", "Reshape", "Transpose", "Slice", "Unsqueeze", "Squeeze", "Flatten", "Split", "Expand",
    # trivially safe elementwise arithmetic (Pow checked: constant exponent)
    "Add", "Sub", "Mul", "Div", "Sqrt", "Pow", "Clip", "Neg", "Abs", "Exp", "Where", "Equal", "Less", "Greater",
    "Not", "Cast",
    # gathers with constant indices (checked)
    "Gather",
    # pooling
    "MaxPool", "AveragePool", "GlobalAveragePool",
    # graph plumbing
    "Constant", "Identity",
})

#: op_type -> (input index that must be a constant, what it is)
_CONSTANT_INPUTS: dict[str, tuple[int, str]] = {
    "ReduceSum": (1, "axes"), "ReduceMean": (1, "axes"), "Gather": (1, "indices"), "Pow": (1, "exponent"),
    "Reshape": (1, "shape"), "Slice": (1, "starts"), "Expand": (1, "shape"), "Unsqueeze": (1, "axes"),
    "Squeeze": (1, "axes"), "Split": (1, "split"),
}


class UnsafeOperatorError(ValueError):
    """An ONNX graph uses an operator or attribute outside the TensorRT-safe set."""


def _constants(model) -> set[str]:
    names = {init.name for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            names.update(node.output)
    return names


def check_trt_safe(model, opset_max: int = OPSET) -> None:
    """Check the opset and every node of ``model`` (an ``onnx.ModelProto``) against :data:`TRT_SAFE_OPS`."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > opset_max:
            raise UnsafeOperatorError(f"the model uses ONNX opset {imp.version}; TensorRT 8.5 to 11 all parse "
                                      f"at most opset {opset_max}: export with opset_version={opset_max}")
        if imp.domain not in ("", "ai.onnx"):
            raise UnsafeOperatorError(f"the model imports the custom operator domain {imp.domain!r}, "
                                      "which TensorRT cannot parse without a plugin")
    consts = _constants(model)
    for i, node in enumerate(model.graph.node):
        where = f"node {node.name or f'#{i}'!r} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            raise UnsafeOperatorError(f"{where} is in the custom domain {node.domain!r}")
        if node.op_type not in TRT_SAFE_OPS:
            raise UnsafeOperatorError(f"{where}: operator {node.op_type} is outside the TensorRT-safe set "
                                      "(fa3d.export.onnx_check.TRT_SAFE_OPS); rewrite the layer with safe operators")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Resize":
            mode = attrs.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode not in ("nearest", "linear"):
                raise UnsafeOperatorError(f"{where}: Resize mode {mode!r}; only nearest and linear are safe")
        if node.op_type in ("ReduceSum", "ReduceMean") and len(node.input) < 2 and "axes" not in attrs:
            if node.op_type == "ReduceSum" or attrs.get("noop_with_empty_axes", 0):
                raise UnsafeOperatorError(f"{where}: reduction without constant axes")
        if node.op_type in _CONSTANT_INPUTS:
            idx, what = _CONSTANT_INPUTS[node.op_type]
            if len(node.input) > idx and node.input[idx] and node.input[idx] not in consts:
                raise UnsafeOperatorError(f"{where}: its {what} input {node.input[idx]!r} is computed at run time "
                                          "(data-dependent); it must be a constant")
