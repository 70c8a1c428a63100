"""FP32 ONNX -> FP16 ONNX with FP32 inputs and outputs (what TensorRT 11's strong typing needs for FP16).

TensorRT 11 has no FP16 builder flag: the precision of every tensor comes from the ONNX. This module
converts weights and activations to float16 with ONNX Runtime's converter
(``onnxruntime.transformers.float16``, from onnxconverter-common), keeping the graph's input and outputs
float32 behind Cast nodes so that callers and the runtime feed and read float32 exactly as for the FP32
model. Operators that ONNX Runtime's converter keeps in float32 (e.g. Min/Max) stay float32 behind casts.

The result is sanitised and checked like the FP32 export (onnx.checker, TensorRT-safe operators, float32
I/O with a dynamic batch) and written atomically with its sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.metadata import read_sidecar, sha256_file

from .onnx_export import OnnxExportError, check_onnx, sanitize, save_onnx

onnx = lazy_import("onnx", extra="export")
float16 = lazy_import("onnxruntime.transformers.float16", extra="export")


@dataclass(frozen=True)
class Fp16Result:
    path: Path
    sidecar: Path
    nodes: int
    casts: int  # Cast nodes in the FP16 graph (I/O boundaries and float32-only operators)
    fp16_initializers: int
    fp32_initializers: int
    sha256: str


def convert_to_fp16(model: "onnx.ModelProto") -> "onnx.ModelProto":  # noqa: F821
    """The FP16 graph with float32 input and outputs (Cast nodes at the boundary)."""
    try:
        return float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    except Exception as e:  # the converter raises assorted errors
        raise OnnxExportError(f"FP16 conversion failed: {e}") from e


def make_fp16(fp32_onnx: Path, out: Path) -> Fp16Result:
    """Convert ``fp32_onnx`` (with its sidecar) to ``out`` (``model.fp16.onnx``) and write ``out``'s sidecar."""
    fp32_onnx, out = Path(fp32_onnx), Path(out)
    meta = read_sidecar(fp32_onnx)
    if meta.format != "onnx" or meta.precision != "fp32":
        raise OnnxExportError(f"{fp32_onnx}: the FP16 conversion needs the FP32 ONNX (its sidecar says "
                              f"{meta.format}/{meta.precision})")
    model = onnx.load(str(fp32_onnx))
    half, _ = sanitize(convert_to_fp16(model))
    check_onnx(half, where=str(out))
    init_types = [t.data_type for t in half.graph.initializer]
    fp16_n = sum(t == onnx.TensorProto.FLOAT16 for t in init_types)
    if fp16_n == 0:
        raise OnnxExportError(f"{out}: the conversion left no float16 weights; nothing would run in FP16")
    side, digest = save_onnx(half, out, meta.with_(precision="fp16", source_sha256=sha256_file(fp32_onnx)))
    return Fp16Result(path=out, sidecar=side, nodes=len(half.graph.node),
                      casts=sum(n.op_type == "Cast" for n in half.graph.node), fp16_initializers=fp16_n,
                      fp32_initializers=sum(t == onnx.TensorProto.FLOAT for t in init_types), sha256=digest)


def is_fp16_model(model: "onnx.ModelProto") -> bool:  # noqa: F821
    """True when most float weights are float16 (an FP16 export), whatever its I/O types."""
    types = [t.data_type for t in model.graph.initializer
             if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) and len(t.dims) > 0]
    return bool(types) and sum(t == onnx.TensorProto.FLOAT16 for t in types) > len(types) / 2
