"""Q/DQ insertion at opset 17 that TensorRT 8.5 to 11 accept, by ONNX Runtime static quantization.

What ONNX Runtime is asked for, and why (checked against what onnxruntime 1.32 emits, see the tests):

* ``QuantFormat.QDQ``: explicit QuantizeLinear/DequantizeLinear pairs, the only INT8 form TensorRT 11
  takes (it has no calibrator);
* int8 activations and weights, both symmetric (``ActivationSymmetric``, ``WeightSymmetric``): zero
  points are 0, as TensorRT requires; weights use the range [-127, 127];
* per-channel weight scales (axis 0 = output channels for Conv and for Gemm with ``transB=1``);
* ``AddQDQPairToWeight``: weights stay float and get a Q -> DQ pair (TensorRT folds it); the default
  would store int8 initialisers feeding DequantizeLinear directly;
* ``DedicatedQDQPair``: one Q/DQ pair per consumer, so that TensorRT can fuse each one into its layer;
* ``QuantizeBias=False``: biases stay float (no int32 bias DequantizeLinear, which TensorRT rejects);
* only the *inputs* of Conv/Gemm/MatMul (``op_types_to_quantize`` and
  ``OpTypesToExcludeOutputQuantization``): the regression outputs (landmark coordinates, rotation) are
  never rounded to 8 bits by an output Q/DQ; TensorRT decides output precision by fusion;
* ``QDQKeepRemovableActivations``: Relu/Clip stay explicit in the graph;
* calibration methods ``minmax``, ``entropy`` and ``percentile``.

``nodes_to_exclude`` keeps named layers in float (the accuracy gate uses it). Tensor ranges can be cached
(``calibration_cache``) so that re-quantizing with other exclusions does not recalibrate.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.policy import OPSET

onnx = lazy_import("onnx", extra="export")
ortq = lazy_import("onnxruntime.quantization", extra="export")  # needs onnx too

QUANTIZED_OP_TYPES = ("Conv", "Gemm", "MatMul")
METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QdqOptions:
    method: str = "percentile"
    percentile: float = 99.99  # for method="percentile"
    batch_size: int = 8
    op_types: tuple[str, ...] = QUANTIZED_OP_TYPES
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"calibration method {self.method!r} is not one of {METHODS}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        bad = set(self.op_types) - set(QUANTIZED_OP_TYPES)
        if bad:
            raise ValueError(f"only {QUANTIZED_OP_TYPES} inputs are quantized for TensorRT; got {sorted(bad)}")


def quantizable_nodes(model_path: str | os.PathLike, op_types: Sequence[str] = QUANTIZED_OP_TYPES) -> list[str]:
    """Names of the nodes whose inputs static quantization would quantize, in graph order."""
    m = onnx.load(str(model_path), load_external_data=False)
    names = [n.name for n in m.graph.node if n.op_type in op_types]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"{model_path}: every Conv/Gemm/MatMul node needs a unique name for layer-wise "
                         "exclusion; re-export the model (torch.onnx.export names nodes) or name them")
    return names


def check_opset(model_path: str | os.PathLike) -> int:
    m = onnx.load(str(model_path), load_external_data=False)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > OPSET:
        raise ValueError(f"{model_path}: ONNX opset {opset} is above {OPSET}, the highest that TensorRT 8.5 "
                         "to 11 all parse; export with torch.onnx.export(..., dynamo=False, opset_version=17)")
    if opset < 13:
        raise ValueError(f"{model_path}: opset {opset} is below 13, which per-channel QuantizeLinear needs; "
                         "re-export at opset 17")
    return opset


def _fixed_batch(model_path: str | os.PathLike) -> int | None:
    m = onnx.load(str(model_path), load_external_data=False)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else None


def input_name(model_path: str | os.PathLike) -> str:
    m = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in inits]
    if len(names) != 1:
        raise ValueError(f"{model_path}: expected one model input, found {names}")
    return names[0]


def equal_batch(n: int, batch: int) -> int:
    """The largest batch size <= ``batch`` that divides ``n``: every calibration batch must have one shape.

    ONNX Runtime's histogram calibrators (percentile, entropy) stack the activations of all batches with
    ``np.asarray``, which fails ("inhomogeneous shape") when the last batch is smaller than the others.
    """
    return next(b for b in range(max(1, min(batch, n)), 0, -1) if n % b == 0)


def calibration_reader(name: str, inputs: np.ndarray, batch: int, progress: bool = False):
    """ONNX Runtime's calibration data reader over ``inputs`` (N, 3, S, S), ``batch`` at a time, for input
    ``name``; rewindable. The class is made here because its base class comes from onnxruntime.quantization."""

    class _NpzReader(ortq.CalibrationDataReader):
        """Feeds the calibration inputs in batches; rewindable."""

        def __init__(self) -> None:
            self._i = 0
            self._bar = None
            if progress:
                self._bar = tqdm(total=len(inputs), desc="INT8 calibration", unit="face")

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._i >= len(inputs):
                if self._bar is not None:
                    self._bar.close()
                return None
            x = inputs[self._i:self._i + batch]
            self._i += batch
            if self._bar is not None:
                self._bar.update(len(x))
            return {name: np.ascontiguousarray(x, dtype=np.float32)}

        def __len__(self) -> int:
            return (len(inputs) + batch - 1) // batch

        def rewind(self) -> None:
            self._i = 0

    return _NpzReader()


class _DropPreprocessHint(logging.Filter):
    """ONNX Runtime's 'consider pre-processing' hint: our exports are already folded and shape-inferred."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def quiet_ort():
    """Scoped: drop ORT's pre-processing hint and its calibration chatter on stdout; restore both after."""
    root = logging.getLogger()
    hint = _DropPreprocessHint()
    root.addFilter(hint)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(hint)


def quantize_qdq(fp32_onnx: str | os.PathLike, out_onnx: str | os.PathLike, inputs: np.ndarray | None,
                 options: QdqOptions = QdqOptions(), *, calibration_cache: str | os.PathLike | None = None,
                 progress: bool = False) -> Path:
    """Write a Q/DQ INT8 model of ``fp32_onnx`` to ``out_onnx`` (atomically).

    ``inputs`` (N, 3, S, S) float32 calibration inputs; may be None only when ``calibration_cache`` holds
    the ranges of an earlier call with the same method.
    """
    fp32_onnx, out_onnx = Path(fp32_onnx), Path(out_onnx)
    check_opset(fp32_onnx)
    if inputs is not None and (inputs.ndim != 4 or inputs.dtype != np.float32 or len(inputs) == 0):
        raise ValueError(f"calibration inputs must be a non-empty float32 (N, 3, S, S) array, got "
                         f"{inputs.dtype} {inputs.shape}")
    known = set(quantizable_nodes(fp32_onnx, options.op_types))
    unknown = [n for n in options.nodes_to_exclude if n not in known]
    if unknown:
        raise ValueError(f"nodes_to_exclude names nodes that are not quantizable {options.op_types} nodes of "
                         f"{fp32_onnx.name}: {unknown}")
    batch = _fixed_batch(fp32_onnx) or options.batch_size
    method = {"minmax": ortq.CalibrationMethod.MinMax, "entropy": ortq.CalibrationMethod.Entropy,
              "percentile": ortq.CalibrationMethod.Percentile}[options.method]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": True,
        "QuantizeBias": False,
        "QDQKeepRemovableActivations": True,
        "OpTypesToExcludeOutputQuantization": list(options.op_types),
        "ForceQuantizeNoInputCheck": False,
    }
    if options.method == "percentile":
        extra["CalibPercentile"] = options.percentile
    kwargs = {}
    if calibration_cache is not None:
        if "calibration_cache_path" not in inspect.signature(ortq.quantize_static).parameters:
            calibration_cache = None  # older onnxruntime: recalibrate every time
        else:
            kwargs["calibration_cache_path"] = str(calibration_cache)
    if inputs is None and not (calibration_cache is not None and Path(calibration_cache).is_file()):
        raise ValueError("no calibration inputs and no calibration cache to take the ranges from")
    if inputs is not None:
        fixed = _fixed_batch(fp32_onnx)
        if fixed and len(inputs) % fixed:
            raise ValueError(f"{fp32_onnx.name} has a fixed batch of {fixed}; give a multiple of {fixed} "
                             f"calibration inputs (got {len(inputs)})")
        batch = fixed or equal_batch(len(inputs), batch)
    reader = None if inputs is None else calibration_reader(input_name(fp32_onnx), inputs, batch, progress)
    with atomic_path(out_onnx) as tmp, quiet_ort():
        ortq.quantize_static(
            str(fp32_onnx), str(tmp), reader,
            quant_format=ortq.QuantFormat.QDQ,
            op_types_to_quantize=list(options.op_types),
            per_channel=True,
            reduce_range=False,
            activation_type=ortq.QuantType.QInt8,
            weight_type=ortq.QuantType.QInt8,
            nodes_to_exclude=list(options.nodes_to_exclude),
            calibrate_method=method,
            extra_options=extra,
            **kwargs,
        )
    return out_onnx
