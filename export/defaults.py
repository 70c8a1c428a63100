"""Defaults of fa-export: the batch profile, the workspace, the file names and the shipped checkpoint.

The shipped default model's ONNX lives with the runtime (:mod:`fa3d.runtime.default_model`); its torch
checkpoint ``model.pt``, which only fa-export reads, lives here in ``fa3d/export/assets/default/``.
Version policy (opset, TensorRT range): :mod:`fa3d.runtime.policy`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fa3d.runtime.default_model import DefaultModelMissing

#: TensorRT optimisation profile (min, opt, max batch): one face is the common case, a crowd the rare one.
DEFAULT_BATCH = (1, 4, 16)
#: TensorRT workspace limit in MiB; small enough for a Jetson Orin Nano (8 GB shared memory).
DEFAULT_WORKSPACE_MB = 1024

ONNX_NAME = "model.onnx"
FP16_ONNX_NAME = "model.fp16.onnx"
INT8_ONNX_NAME = "model.int8.onnx"
ENGINE_NAME = "model.plan"
TIMING_CACHE_NAME = "timing.cache"
INT8_REPORT_NAME = "int8_report.json"



def export_asset_path(relative: str) -> Path:
    """The path of ``fa3d/export/assets/<relative>`` inside the installed package (it may not exist)."""
    return Path(str(resources.files("fa3d.export").joinpath("assets", *relative.split("/"))))


def default_checkpoint_path() -> Path:
    """The shipped default model's weights-only checkpoint (what fa-export starts from when given none)."""
    path = export_asset_path("default/model.pt")
    if not path.is_file():
        raise DefaultModelMissing(f"{path} is not in this installation; the shipped default model is not in this "
                                  "installation: give a checkpoint explicitly (fa-export path/to/model.pt) or train "
                                  "one with fa-train")
    return path
