"""PyTorch -> ONNX (opset 17, dynamic batch), sanitised and checked for TensorRT 8.5 to 11.

One job: turn an eval-mode model whose forward returns the dict ``landmarks / rotation / dense /
confidence`` into a clean ONNX file. Steps, each reported in :class:`OnnxExportResult`:

1. ``torch.onnx.export(..., dynamo=False, opset_version=17)`` (the TorchScript exporter: the dynamo
   exporter will not go below opset 18, which TensorRT 8.5 cannot parse), input ``input`` (B,3,S,S) with a
   dynamic batch axis, the four outputs by name;
2. sanitising with onnx-graphsurgeon: constant folding, dead-node removal, topological sort;
3. ``onnx.checker.check_model(full_check=True)`` (includes strict shape inference);
4. the TensorRT-safe operator and attribute check of :mod:`fa3d.export.onnx_check` (fails naming the node);
5. an atomic write of the file and of its JSON sidecar (``model.onnx.json``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from importlib import metadata as im
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.metadata import INPUT_NAME, OUTPUT_NAMES, ArtifactMetadata, sha256_file, sidecar_path, write_metadata
from fa3d.runtime.policy import OPSET

from .onnx_check import check_trt_safe

if TYPE_CHECKING:
    import onnx
    import torch
else:  # loaded on first use: fa-export --from-onnx needs no torch
    onnx = lazy_import("onnx", extra="export")
    torch = lazy_import("torch", extra="train")
gs = lazy_import("onnx_graphsurgeon", extra="export")


class OnnxExportError(RuntimeError):
    """The model could not be exported, or the exported graph failed a check."""


@dataclass(frozen=True)
class SanitizeResult:
    nodes_before: int
    nodes_after: int
    ops: tuple[str, ...]  # sorted operator types after sanitising


@dataclass(frozen=True)
class OnnxExportResult:
    path: Path
    sidecar: Path
    opset: int
    input_size: int
    nodes_exported: int
    nodes: int
    ops: tuple[str, ...]
    sha256: str


class _TupleOutputs:
    """Builds a wrapper module that returns the model's dict as a tuple in :data:`OUTPUT_NAMES` order."""

    @staticmethod
    def wrap(model: "torch.nn.Module", names: tuple[str, ...] = OUTPUT_NAMES) -> "torch.nn.Module":
        class Wrapped(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                out = self.inner(x)
                return tuple(out[name] for name in names)

        return Wrapped(model).eval()


def _check_model_outputs(model: "torch.nn.Module", example: "torch.Tensor",
                         names: tuple[str, ...] = OUTPUT_NAMES) -> None:
    with torch.no_grad():
        out = model(example)
    if not isinstance(out, dict) or set(out) != set(names):
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise OnnxExportError(f"the model's forward must return a dict with exactly {list(names)} "
                              f"in eval mode, got {got}")
    b = example.shape[0]
    for name, t in out.items():
        if not isinstance(t, torch.Tensor) or t.shape[0] != b or t.dtype != torch.float32:
            raise OnnxExportError(f"output {name!r} must be a float32 tensor with batch {b} first, got "
                                  f"{getattr(t, 'dtype', type(t))} {tuple(getattr(t, 'shape', ()))}")


def torch_to_onnx(model: "torch.nn.Module", input_size: int, opset: int = OPSET,
                  outputs: tuple[str, ...] = OUTPUT_NAMES) -> "onnx.ModelProto":
    """Export with the TorchScript exporter at ``opset``: named input/outputs, dynamic batch, constant folding.

    ``model`` returns a dict with exactly the keys ``outputs`` (fa3d models: :data:`OUTPUT_NAMES`)."""
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, input_size, input_size, generator=gen)
    _check_model_outputs(model, example, outputs)
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deliberate (dynamo cannot emit opset 17): silence its deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(_TupleOutputs.wrap(model, outputs), (example,), buf, dynamo=False,
                              opset_version=opset, input_names=[INPUT_NAME], output_names=list(outputs),
                              dynamic_axes=dynamic,
                              do_constant_folding=True)
    except Exception as e:  # the exporter raises many types; name the step
        raise OnnxExportError(f"torch.onnx.export (opset {opset}, dynamo=False) failed: {e}") from e
    return onnx.load_from_string(buf.getvalue())


def sanitize(model: "onnx.ModelProto") -> tuple["onnx.ModelProto", SanitizeResult]:
    """Constant folding, dead-node removal and a topological sort with onnx-graphsurgeon."""
    before = len(model.graph.node)
    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    out = gs.export_onnx(graph)
    # graphsurgeon keeps opset imports and IR version; keep the producer's metadata too
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    del out.metadata_props[:]
    out.metadata_props.extend(model.metadata_props)
    ops = tuple(sorted({n.op_type for n in out.graph.node}))
    return out, SanitizeResult(nodes_before=before, nodes_after=len(out.graph.node), ops=ops)


def check_onnx(model: "onnx.ModelProto", opset: int = OPSET, where: str = "model") -> None:
    """``onnx.checker`` (full check with strict shape inference) and the TensorRT-safe operator check.

    Raises :class:`OnnxExportError` naming the problem (and the node, for an unsafe operator).
    """
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise OnnxExportError(f"{where}: onnx.checker rejected the graph: {e}") from e
    default = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not default or default[0] > opset:
        raise OnnxExportError(f"{where}: opset {default} is above {opset}, the highest TensorRT 8.5 parses")
    try:
        check_trt_safe(_without_qdq(model))
    except Exception as e:
        raise OnnxExportError(f"{where}: not TensorRT-safe: {e}") from e
    _check_io(model, where)


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _without_qdq(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """The model without its Q/DQ nodes, for the operator check (Q/DQ themselves are linted by
    :mod:`fa3d.calibration.lint`, which knows what TensorRT accepts of them)."""
    if not any(n.op_type in QDQ_OPS for n in model.graph.node):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    keep = [n for n in copy.graph.node if n.op_type not in QDQ_OPS]
    del copy.graph.node[:]
    copy.graph.node.extend(keep)
    return copy


def _check_io(model: "onnx.ModelProto", where: str) -> None:
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    names_in = [i.name for i in inputs]
    names_out = [o.name for o in model.graph.output]
    if names_in != [INPUT_NAME] or sorted(names_out) != sorted(OUTPUT_NAMES):
        raise OnnxExportError(f"{where}: expected input {[INPUT_NAME]} and outputs {list(OUTPUT_NAMES)}, got "
                              f"{names_in} and {names_out}")
    for vi in (*inputs, *model.graph.output):
        tt = vi.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise OnnxExportError(f"{where}: {vi.name!r} is {onnx.TensorProto.DataType.Name(tt.elem_type)}, "
                                  "inputs and outputs must stay FLOAT (float32)")
        if not tt.shape.dim or tt.shape.dim[0].dim_value > 0:
            raise OnnxExportError(f"{where}: {vi.name!r} has no dynamic batch axis")


def save_onnx(model: "onnx.ModelProto", path: Path, metadata: ArtifactMetadata) -> tuple[Path, str]:
    """Write the sidecar and then the model, each atomically (no model without its sidecar).

    Returns (sidecar path, sha256 of the model).
    """
    path = Path(path)
    data = model.SerializeToString()
    with atomic_path(path) as tmp:  # the model appears only after its sidecar was written
        tmp.write_bytes(data)
        digest = sha256_file(tmp)
        side = write_metadata(sidecar_path(path), metadata)
    return side, digest


def producer_versions() -> dict[str, str]:
    """Versions of the packages that shape an exported graph."""
    out: dict[str, Any] = {}
    for pkg in ("fa3d", "torch", "onnx", "onnx-graphsurgeon", "onnxruntime"):
        try:
            out[pkg] = im.version(pkg)
        except im.PackageNotFoundError:
            continue
    return out


def export_onnx(model: "torch.nn.Module", out: Path, metadata: ArtifactMetadata,
                opset: int = OPSET) -> OnnxExportResult:
    """Export, sanitise, check and write ``out`` with its sidecar. ``metadata`` describes the source model."""
    size = metadata.preprocess.input_size
    raw = torch_to_onnx(model, size, opset)
    clean, info = sanitize(raw)
    check_onnx(clean, opset, where=str(out))
    producer = {**metadata.producer, **producer_versions()}
    meta = metadata.with_(format="onnx", precision="fp32", producer=producer, engine=None)
    side, digest = save_onnx(clean, Path(out), meta)
    return OnnxExportResult(path=Path(out), sidecar=side, opset=opset, input_size=size,
                            nodes_exported=info.nodes_before, nodes=info.nodes_after, ops=info.ops, sha256=digest)
