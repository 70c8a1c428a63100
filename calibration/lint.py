"""A Q/DQ lint: the rules a Q/DQ ONNX must follow to build on TensorRT 8.5 to 11, checked node by node.

Rules (each failure names the node):

1. the default-domain opset is at most 17 (the highest TensorRT 8.5 parses); Q/DQ in the default domain;
2. every QuantizeLinear/DequantizeLinear has an explicit int8 zero point and it is 0 (TensorRT is
   symmetric only; a missing zero point means uint8);
3. scales are constant, float, finite and positive;
4. weight quantization is per channel on the output-channel axis (0 for Conv and for Gemm with
   ``transB=1``; 1 for Gemm with ``transB=0``, the last axis for MatMul) with one scale per channel;
5. a DequantizeLinear fed directly by an initialiser holds pre-quantized int8 weights, quantized per channel
   as in rule 4 (TensorRT's "Explicit Quantization": weights may be float, quantized by a QuantizeLinear, or
   pre-quantized, followed by a DequantizeLinear; NVIDIA's TensorRT 11.5 documentation, checked; what 8.5 to
   10.x accept was not confirmed here, docs/deploying.md); other integer types are refused;
6. no int32 bias DequantizeLinear (biases stay float).

fa3d's own quantizer writes float weights with a QuantizeLinear/DequantizeLinear pair (``AddQDQPairToWeight``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.policy import OPSET

onnx = lazy_import("onnx", extra="export")

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QdqLintError(ValueError):
    """The model breaks a TensorRT Q/DQ rule; ``problems`` lists each one with its node."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        super().__init__(f"{where}: {len(problems)} Q/DQ problem(s) TensorRT would reject:\n  {shown}\n"
                         "Fix: quantize with fa3d.calibration (symmetric int8, per-channel, QuantizeBias=False, "
                         "AddQDQPairToWeight=True) from an opset-17 FP32 export")


@dataclass(frozen=True)
class LintSummary:
    opset: int
    quantize_nodes: int
    dequantize_nodes: int
    weight_pairs: int  # float weight -> Q -> DQ pairs, all per-channel
    prequantized_weights: int = 0  # int8 weight -> DQ, all per-channel


def _label(node, i: int) -> str:
    return f"{node.op_type} '{node.name}'" if node.name else f"{node.op_type} (unnamed, node #{i})"


def _out_channel_axis(consumer, weight_ndim: int) -> int | None:
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if consumer.op_type == "MatMul":
        return weight_ndim - 1
    return None


def lint_model(model, where: str = "model") -> LintSummary:
    """Check an ``onnx.ModelProto``; raise :class:`QdqLintError` listing every problem."""
    g = model.graph
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > OPSET:
        problems.append(f"model: default-domain opset {opset} > {OPSET} (TensorRT 8.5 parses at most 17; "
                        "re-export at opset_version=17)")
    consts: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = onnx.numpy_helper.to_array(a.t)
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)

    nq = ndq = nweights = nprequant = 0
    for i, n in enumerate(g.node):
        if n.op_type not in QDQ_OPS:
            continue
        label = _label(n, i)
        nq += n.op_type == "QuantizeLinear"
        ndq += n.op_type == "DequantizeLinear"
        if n.domain not in ("", "ai.onnx"):
            problems.append(f"{label}: in domain {n.domain!r}; TensorRT needs the standard ONNX domain "
                            "(do not use UseQDQContribOps)")
        # zero point
        if len(n.input) < 3 or not n.input[2]:
            problems.append(f"{label}: no zero point (defaults to uint8); TensorRT needs an int8 zero point of 0")
        elif n.input[2] not in consts:
            problems.append(f"{label}: zero point '{n.input[2]}' is not a constant")
        else:
            zp = consts[n.input[2]]
            if zp.dtype != np.int8:
                problems.append(f"{label}: zero point dtype {zp.dtype} is not int8")
            if np.any(zp != 0):
                problems.append(f"{label}: zero point {zp.ravel()[:4].tolist()} is not 0 "
                                "(TensorRT supports symmetric quantization only)")
        # scale
        scale = consts.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            problems.append(f"{label}: scale '{n.input[1] if len(n.input) > 1 else ''}' is not a constant")
        elif scale.dtype.kind != "f" or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{label}: scale must be finite and positive float, got {scale.dtype} "
                            f"min {np.min(scale) if scale.size else 'empty'}")
        if n.op_type == "DequantizeLinear":
            x = n.input[0]
            src = producer.get(x)
            if x in consts:
                dt = consts[x].dtype
                if dt == np.int32:
                    problems.append(f"{label}: an int32 bias DequantizeLinear (leave biases in float: "
                                    "QuantizeBias=False)")
                elif dt != np.int8:
                    problems.append(f"{label}: fed directly by the {dt} initialiser '{x}'; pre-quantized weights must "
                                    "be int8 (symmetric)")
                else:
                    nprequant += 1
                    problems += _weight_problems(label, x, consts[x], scale, n, consumers.get(n.output[0], []))
            elif src is None or src.op_type != "QuantizeLinear":
                problems.append(f"{label}: input '{x}' does not come from a QuantizeLinear")
            continue
        # QuantizeLinear of a float weight: per-channel on the output-channel axis
        x = n.input[0]
        if x not in consts:
            continue
        w = consts[x]
        nweights += 1
        if w.dtype.kind != "f":
            problems.append(f"{label}: quantizes a non-float initialiser '{x}' ({w.dtype})")
            continue
        users = [c for dq in consumers.get(n.output[0], []) if dq.op_type == "DequantizeLinear"
                 for c in consumers.get(dq.output[0], [])]
        problems += _weight_problems(label, x, w, scale, n, users)
    if problems:
        raise QdqLintError(where, problems)
    if nq == 0:
        raise QdqLintError(where, ["model: no QuantizeLinear node at all; this is not a Q/DQ INT8 model"])
    return LintSummary(opset=int(opset), quantize_nodes=nq, dequantize_nodes=ndq, weight_pairs=nweights,
                       prequantized_weights=nprequant)


def _weight_problems(label: str, name: str, w: np.ndarray, scale: np.ndarray | None, node, users: list) -> list[str]:
    """Rule 4 for one weight ``w`` quantized by ``node`` (a QuantizeLinear, or the DequantizeLinear of pre-quantized
    weights) and used by ``users``: per-channel scales on the users' output-channel axis."""
    if scale is None:
        return []
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    axis = axis + w.ndim if axis < 0 else axis
    want = {_out_channel_axis(c, w.ndim) for c in users} - {None}
    expected = want.pop() if len(want) == 1 else 0
    if scale.ndim == 0 or scale.size == 1 and w.shape[expected] != 1:
        return [f"{label}: weight '{name}' {tuple(w.shape)} is quantized per tensor; TensorRT needs per-channel "
                f"scales on axis {expected} (per_channel=True)"]
    if axis != expected:
        return [f"{label}: weight '{name}' is quantized on axis {axis}, not its output-channel axis {expected}"]
    if scale.shape != (w.shape[expected],):
        return [f"{label}: weight '{name}' has {scale.shape} scales for {w.shape[expected]} channels"]
    return []


def lint_qdq(path: str | os.PathLike) -> LintSummary:
    """Lint a Q/DQ ONNX file; raise :class:`QdqLintError` naming each offending node."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX file not found")
    return lint_model(onnx.load(str(path)), where=str(path))
