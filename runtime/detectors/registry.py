"""The detectors by name: the one list of what ``--detector`` and ``FaceAlignerOptions.detector`` accept.

A built-in name (:data:`BUILTIN`) or the path of a user-supplied ONNX file whose name says which network it
is (:data:`FILE_KINDS`: ``yunet`` or ``scrfd`` in the file name). :func:`make_detector` builds it;
:data:`DETECTOR_HELP` is the sentence every CLI's ``--help`` uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..policy import DEFAULT_DETECTOR
from .base import DetectorBase, DetectorError
from .blazeface_detector import BlazeFaceDetector
from .haar import HaarDetector
from .scrfd import ScrfdDetector
from .yunet import YuNetDetector

#: built-in detectors: name -> what it is (for --help), and how to make it
BUILTIN: dict[str, tuple[str, Callable[[], DetectorBase]]] = {
    "blazeface": ("the shipped CNN, MediaPipe BlazeFace short range", BlazeFaceDetector),
    "haar": ("OpenCV's cascade: frontal faces only", HaarDetector),
}
#: user-supplied detector files: the word their file name contains -> the class that runs them
FILE_KINDS: dict[str, Callable[[str], DetectorBase]] = {"yunet": YuNetDetector, "scrfd": ScrfdDetector}

DETECTOR_HELP = (", ".join(f"'{k}' ({what})" for k, (what, _) in BUILTIN.items())
                 + ", or a YuNet / SCRFD ONNX file (its name must contain 'yunet' or 'scrfd')")


def is_builtin(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a built-in detector (not a file)."""
    return str(spec) in BUILTIN


def file_kind(spec: str | os.PathLike) -> str | None:
    """``"yunet"`` / ``"scrfd"`` for a detector file's path (from its name), None for anything else."""
    name = Path(spec).name.lower()
    return next((k for k in FILE_KINDS if k in name), None)


def make_detector(spec: str | os.PathLike = DEFAULT_DETECTOR) -> DetectorBase:
    """The detector ``spec`` names (see the module doc). An unknown name raises ValueError; a detector file
    that is missing, corrupt or not the network its name says raises :class:`DetectorError`."""
    spec = str(spec)
    if spec in BUILTIN:
        return BUILTIN[spec][1]()
    kind = file_kind(spec)
    if kind is None:
        raise ValueError(f"unknown detector {spec!r}: use {DETECTOR_HELP}")
    if not Path(spec).is_file():
        raise DetectorError(f"{spec}: {kind} detector file not found")
    return FILE_KINDS[kind](spec)
