"""Which precision TensorRT chose for each layer of an engine: the engine inspector's JSON, counted.

TensorRT reports per-layer formats only for engines built with DETAILED profiling verbosity (fa-export's
builder sets it). The JSON schema changed in TensorRT 11 (NVIDIA's "Migrating IEngineInspector Usage from
TensorRT 10.x to 11.x"): 10.x gives each layer input/output one ``"Format/Datatype"`` string ("Row major
linear FP32 format (kLINEAR)"), 11.x separate data type and format fields; both are read, the way Polygraphy's
``inspect model`` reads them. A layer counts under the data type of its first output.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from fa3d.runtime.backends.trt import shared_logger
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.metadata import read_sidecar

trt = lazy_import("tensorrt", extra="gpu")

#: the precision names reported, by the words TensorRT uses for them (searched in this order)
_DTYPES = (("INT8", "int8"), ("FP16", "fp16"), ("HALF", "fp16"), ("BF16", "bf16"), ("FP8", "fp8"),
           ("FP32", "fp32"), ("FLOAT", "fp32"), ("INT32", "int32"), ("INT64", "int64"), ("BOOL", "bool"))


class InspectError(RuntimeError):
    """The engine could not be deserialised or inspected."""


def tensor_precision(entry: dict[str, Any]) -> str:
    """The precision of one inspector tensor entry (10.x or 11.x schema); "unknown" when none is named."""
    if "Format/Datatype" in entry:
        text = str(entry["Format/Datatype"])
    else:
        text = " ".join(str(entry[k]) for k in ("DataType", "Datatype", "Format") if entry.get(k))
    upper = text.upper()
    return next((name for word, name in _DTYPES if word in upper), "unknown")


def count_precisions(layers: list[Any]) -> dict[str, int]:
    """Layers per precision from the inspector's layer entries; "names only" for an engine built without
    DETAILED profiling verbosity (entries are plain names then)."""
    counts: Counter[str] = Counter()
    for layer in layers:
        if not isinstance(layer, dict):
            counts["names only"] += 1
            continue
        outputs = layer.get("Outputs") or []
        counts[tensor_precision(outputs[0]) if outputs else "unknown"] += 1
    return dict(counts)


def engine_layers(engine_path: Path) -> list[Any]:
    """The inspector's layer entries of ``engine_path`` (deserialised with the DLA core its sidecar names)."""
    runtime = trt.Runtime(shared_logger())
    dla_core = (read_sidecar(engine_path).engine or {}).get("dla_core")
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise InspectError(f"{engine_path}: TensorRT could not deserialize the engine")
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    return list(info.get("Layers", []))


def layer_precisions(engine_path: Path) -> dict[str, int]:
    """How many layers of ``engine_path`` run in each precision, e.g. ``{"int8": 41, "fp16": 12}``."""
    return count_precisions(engine_layers(engine_path))
