"""Every CLI's outputs, checked before any work: the one place that decides whether a set of outputs is safe.

:func:`output_clash` returns one line naming the first problem, or None:

* **kind**: an output that must be a file names an existing folder (``--output out.mp4`` where ``out.mp4/``
  is a folder, ``fa-calib --out set.npz/``), or an output folder names an existing file. A device or FIFO
  (``/dev/null``, ``/dev/full``) is a valid file output: it is written in place, never replaced
  (:mod:`fa3d.runtime.atomic`).
* **outputs against each other**: two outputs naming one file, or a file that a folder output will write
  (two outputs on the same device are fine: nothing is replaced).
* **outputs against inputs**: an output, or a file a folder output will write, that names an input file,
  through a symlink, a relative path or a hard link. A model's sidecar (``model.onnx.json``) is an input
  too: give :func:`artifact_files` of each model.

The CLIs print the line with :func:`fa3d.runtime.cli_errors.check_outputs_not_inputs` and exit with their
usage code, before any model is loaded or any frame is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .atomic import is_special_file

KINDS = ("file", "folder")


@dataclass(frozen=True)
class Output:
    """An output path and what it must be: ``file`` (a regular file, a device or a FIFO) or ``folder``;
    ``writes``: the files a folder output will write, when they are known before the run."""

    path: str | os.PathLike
    kind: str = "file"
    writes: tuple[str | os.PathLike, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Output.kind must be one of {KINDS}, got {self.kind!r}")


def artifact_files(path: str | os.PathLike | None) -> list[Path]:
    """A model file and its JSON sidecar (``model.onnx`` and ``model.onnx.json``): both are inputs."""
    if path is None:
        return []
    return [Path(path), Path(str(path) + ".json")]


def _keys(p: Path) -> set:
    """What identifies a file: its resolved path, and (when it exists) its device and inode (hard links)."""
    keys: set = {("path", os.path.realpath(p))}
    try:
        st = os.stat(p)
    except (OSError, ValueError):
        return keys
    keys.add(("inode", st.st_dev, st.st_ino))
    return keys


def _kind_problem(option: str, out: Output) -> str | None:
    p = Path(out.path)
    if out.kind == "file" and p.is_dir():
        return (f"{option} {str(p)!r} is an existing folder, and {option} writes a file; name a file "
                "(or remove the folder)")
    if out.kind == "folder" and (p.exists() or p.is_symlink()) and not p.is_dir():
        return f"{option} {str(p)!r} is a file, not a folder; give a folder (it is created when missing)"
    return None


def output_clash(outputs: Mapping[str, Output | str | os.PathLike | None],
                 inputs: Iterable[str | os.PathLike | int | None]) -> str | None:
    """A one-line problem with ``outputs`` (option name -> :class:`Output` or a file path; None entries are
    ignored) given the run's ``inputs`` (paths; camera indices, URLs and None are ignored), else None."""
    outs = [(k, v if isinstance(v, Output) else Output(v)) for k, v in outputs.items() if v is not None]
    for k, o in outs:
        problem = _kind_problem(k, o)
        if problem:
            return problem
    # every file an output will write, with the option that writes it
    written: list[tuple[str, Output, Path]] = []
    for k, o in outs:
        written.append((k, o, Path(o.path)))
        written += [(k, o, Path(w)) for w in o.writes]
    seen: dict = {}
    for k, o, p in written:
        if is_special_file(p):
            continue  # devices and FIFOs are written in place: several outputs may share /dev/null
        keys = _keys(p)
        other = next((seen[key] for key in keys if key in seen and seen[key][0] != k), None)
        if other is not None:
            return f"{other[0]} and {k} name the same file {str(other[1])!r}; give two different files"
        for key in keys:
            seen.setdefault(key, (k, p))
    in_keys: dict = {}
    for src in inputs:
        if src is None or isinstance(src, int):
            continue
        s = Path(src)
        for key in _keys(s):
            in_keys.setdefault(key, s)
    for k, o, p in written:
        hit = next((in_keys[key] for key in _keys(p) if key in in_keys), None)
        if hit is None:
            continue
        if p != Path(o.path):
            return (f"{k} {str(o.path)!r} would overwrite the input {str(hit)!r} (with {p.name}); give a folder "
                    "that holds no input")
        if o.kind == "folder":
            return (f"{k} {str(p)!r} is the source folder: annotated images would mix with the images they come "
                    "from; give another folder")
        return f"{k} {str(p)!r} is an input of this run and would be overwritten; write the output to another file"
    return None


__all__ = ["Output", "artifact_files", "output_clash"]
