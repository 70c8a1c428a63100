"""Defaults of fa-export: the shipped model, the batch profile, the workspace and the file names."""

from __future__ import annotations

from pathlib import Path

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


def _runtime_dir() -> Path:
    from fa3d import runtime  # numpy + OpenCV only

    return Path(runtime.__file__).resolve().parent


def default_checkpoint_path() -> Path:
    """Where the shipped default model's checkpoint lives inside the installed package (may not exist yet)."""
    return _runtime_dir() / "assets" / "default" / "model.pt"


def default_checkpoint() -> Path:
    """The shipped default model's checkpoint; a clear error when this installation has none."""
    path = default_checkpoint_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the shipped default model is not in this installation ({path} does not exist); "
            "give a checkpoint explicitly (fa-export path/to/model.pt) or train one with fa-train")
    return path


def sample_image_path() -> Path:
    """The bundled redistributable sample face (public-domain NASA astronaut portrait), if installed."""
    return _runtime_dir() / "assets" / "samples" / "astronaut.png"
