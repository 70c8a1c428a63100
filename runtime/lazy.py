"""One lazy-import point for heavy optional dependencies (Polygraphy's ``mod.lazy_import`` idea).

A module names what it may need at its top::

    from fa3d.runtime.lazy import lazy_import
    trt = lazy_import("tensorrt", extra="gpu")

and nothing is imported until an attribute is used (``trt.Builder``). A dependency that is not installed,
or whose own import fails (TensorRT can fail with errors other than ModuleNotFoundError when its libraries
do not load), raises :class:`MissingDependency` naming the pip extra that brings it. :func:`available` asks
without importing (``importlib.util.find_spec``), which never loads a library or touches a GPU.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType


class MissingDependency(ImportError):
    """An optional dependency is not installed here or cannot be imported."""


def available(name: str) -> bool:
    """Whether module ``name`` could be imported, asked without importing it (or its parents' code beyond
    what ``find_spec`` needs)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        return False


#: the private names a user of a module asks for
_FORWARDED = frozenset({"__version__", "__file__"})


class LazyModule:
    """Stands for module ``name`` and imports it on first attribute access.

    It holds no module of its own: every access looks the module up in ``sys.modules`` (a dict lookup once
    imported), so what ``sys.modules`` holds is what is used, e.g. a test's stand-in or a ``None`` entry that
    marks the dependency as missing."""

    def __init__(self, name: str, extra: str | None = None) -> None:
        self._name, self._extra = name, extra

    def _load(self) -> ModuleType:
        module = sys.modules.get(self._name)
        if module is not None:
            return module
        try:
            return importlib.import_module(self._name)
        except Exception as e:  # noqa: BLE001 - any import failure means "not usable here"
            hint = f" (install it with: pip install 'fa3d[{self._extra}]')" if self._extra else ""
            raise MissingDependency(f"{self._name} cannot be imported here{hint}: "
                                    f"{type(e).__name__}: {e}") from e

    def __getattr__(self, attr: str):
        if attr.startswith("_") and attr not in _FORWARDED:  # copy/pickle probes and our own fields
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __repr__(self) -> str:
        state = "loaded" if sys.modules.get(self._name) is not None else "not loaded"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str, extra: str | None = None) -> LazyModule:
    """A :class:`LazyModule` for ``name``; ``extra`` is the fa3d pip extra that installs it (for the error)."""
    return LazyModule(name, extra)
