"""Where the shipped default model and the bundled samples live inside the installed package.

The one place that knows the runtime's asset layout: ``fa3d/runtime/assets/default/`` (the default model:
``model.onnx`` + ``model.onnx.json``) and ``fa3d/runtime/assets/samples/`` (the public-domain portrait and the
clip made from it). The default model's torch checkpoint ``model.pt`` is fa-export's, not the runtime's:
:func:`fa3d.export.defaults.default_checkpoint_path`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SAMPLES = ("astronaut.png", "astronaut.mp4")


class DefaultModelMissing(FileNotFoundError):
    """This installation lacks a shipped asset (the default model or a sample)."""


def asset_path(relative: str) -> Path:
    """The path of ``assets/<relative>`` inside the installed package (it may not exist)."""
    return Path(str(resources.files("fa3d.runtime").joinpath("assets", *relative.split("/"))))


def _existing(relative: str, hint: str) -> Path:
    path = asset_path(relative)
    if not path.is_file():
        raise DefaultModelMissing(f"{path} is not in this installation; {hint}")
    return path


def default_model_path() -> Path:
    """The shipped default model's ONNX file (with its ``model.onnx.json`` sidecar)."""
    return _existing("default/model.onnx", "the shipped default model is missing: give a model explicitly "
                     "(--model model.onnx or --engine model.plan, made by fa-export)")


def sample_path(name: str = "astronaut.mp4") -> Path:
    """A bundled sample: ``astronaut.png`` (public-domain NASA portrait) or ``astronaut.mp4`` (a clip of it)."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; bundled samples: {', '.join(SAMPLES)}")
    return _existing(f"samples/{name}", "the bundled sample is missing: give a source explicitly "
                     "(--source clip.mp4 or --camera 0), or reinstall fa3d")


def sample_clip_path() -> Path:
    return sample_path("astronaut.mp4")
