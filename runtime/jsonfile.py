"""The one reader of small JSON files that describe things (model sidecars, camera intrinsics): bounded.

A JSON file given by a user is read within limits, whatever it holds: at most :data:`MAX_JSON_BYTES`
bytes, containers nested at most :data:`MAX_JSON_DEPTH` deep (a 200,000-deep array would otherwise end in
a RecursionError), and only finite numbers (``NaN``, ``Infinity`` and ``1e999``, which Python reads as
infinity, are refused). Every problem is one :class:`JsonFileError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

#: the largest JSON description read (a sidecar is a few KB)
MAX_JSON_BYTES = 1 << 20
#: the deepest nesting of arrays and objects (a sidecar nests 4 deep)
MAX_JSON_DEPTH = 32

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)


class JsonFileError(ValueError):
    """A JSON file that is unreadable, too large, too deep, or holds a number that is not finite."""


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in ``text`` (brackets inside strings do not count)."""
    b = np.frombuffer(_STRING.sub('""', text).encode("utf-8"), np.uint8)
    step = np.isin(b, (ord("["), ord("{"))).astype(np.int64) - np.isin(b, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise JsonFileError(f"the number {text} is out of range (not a finite float)")
    return v


def _no_constant(name: str):
    raise JsonFileError(f"{name} is not a number this file may hold (numbers must be finite)")


def loads_bounded(text: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with the limits of this module (depth, finite numbers); JsonFileError otherwise."""
    depth = json_depth(text)
    if depth > max_depth:
        raise JsonFileError(f"arrays and objects nest {depth} deep; at most {max_depth} is accepted")
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except JsonFileError:
        raise
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an integer of too many digits
        raise JsonFileError(f"not valid JSON ({e})") from None


def read_json_file(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read and parse ``path`` within the limits; FileNotFoundError if it is missing, JsonFileError (whose
    message starts with the path) for anything else."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise JsonFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise JsonFileError(f"{path}: larger than {max_bytes} bytes; not a description fa3d writes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonFileError(f"{path}: not UTF-8 text ({e})") from None
    try:
        return loads_bounded(text, max_depth=max_depth)
    except JsonFileError as e:
        raise JsonFileError(f"{path}: {e}") from None


__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "JsonFileError", "json_depth", "loads_bounded", "read_json_file"]
