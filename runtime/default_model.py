"""Where the shipped default model and the bundled sample clip live inside the installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


class DefaultModelMissing(FileNotFoundError):
    """This installation has no shipped default model (or sample clip)."""


def _asset(relative: str) -> Path:
    return Path(str(resources.files("fa3d.runtime").joinpath("assets", *relative.split("/"))))


def default_model_path() -> Path:
    """``fa3d/runtime/assets/default/model.onnx`` (with its ``model.onnx.json`` sidecar); a clear error if absent."""
    path = _asset("default/model.onnx")
    if not path.is_file():
        raise DefaultModelMissing(
            f"the shipped default model is not in this installation ({path} does not exist); give a model "
            "explicitly (--model model.onnx or --engine model.plan, made by fa-export)")
    return path


def sample_clip_path() -> Path:
    """The bundled sample clip ``fa3d/runtime/assets/samples/astronaut.mp4``; a clear error if absent."""
    path = _asset("samples/astronaut.mp4")
    if not path.is_file():
        raise DefaultModelMissing(f"the bundled sample clip is not in this installation ({path} does not exist); "
                                  "give a source explicitly (--source clip.mp4 or --camera 0)")
    return path
