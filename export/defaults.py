"""Defaults of fa-export: the batch profile, the workspace and the file names (the shipped model: see
:mod:`fa3d.runtime.default_model`)."""

from __future__ import annotations

#: TensorRT optimisation profile (min, opt, max batch): one face is the common case, a crowd the rare one.
DEFAULT_BATCH = (1, 4, 16)
#: TensorRT workspace limit in MiB; small enough for a Jetson Orin Nano (8 GB shared memory).
DEFAULT_WORKSPACE_MB = 1024
#: the highest ONNX opset that TensorRT 8.5 to 11 all parse (DESIGN.md section 3)
OPSET = 17

ONNX_NAME = "model.onnx"
FP16_ONNX_NAME = "model.fp16.onnx"
INT8_ONNX_NAME = "model.int8.onnx"
ENGINE_NAME = "model.plan"
TIMING_CACHE_NAME = "timing.cache"
INT8_REPORT_NAME = "int8_report.json"

