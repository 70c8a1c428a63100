"""fa3d.runtime.lazy: nothing is imported before first use; a missing module names its extra."""

import sys

import pytest

from fa3d.runtime.lazy import MissingDependency, available, lazy_import


def test_import_happens_on_first_attribute_only():
    sys.modules.pop("colorsys", None)
    mod = lazy_import("colorsys")
    assert "colorsys" not in sys.modules
    assert mod.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_missing_module_names_the_extra():
    mod = lazy_import("fa3d_no_such_module_xyz", extra="gpu")
    with pytest.raises(MissingDependency, match=r"fa3d\[gpu\]"):
        mod.anything


def test_available_does_not_import():
    sys.modules.pop("colorsys", None)
    assert available("colorsys") and "colorsys" not in sys.modules
    assert not available("fa3d_no_such_module_xyz")
    assert not available("fa3d_no_such_parent.child")


def test_follows_sys_modules(monkeypatch):
    """No module is held: a stand-in put into sys.modules is used, and a None entry reads as missing."""
    import json

    assert lazy_import("json").__version__ == json.__version__  # the one private name users ask for
    mod = lazy_import("colorsys", extra="dev")
    stand_in = type(sys)("colorsys")
    stand_in.rgb_to_hsv = lambda *a: "stand-in"
    monkeypatch.setitem(sys.modules, "colorsys", stand_in)
    assert mod.rgb_to_hsv(1.0, 0.0, 0.0) == "stand-in"
    monkeypatch.setitem(sys.modules, "colorsys", None)
    with pytest.raises(MissingDependency, match=r"colorsys cannot be imported.*fa3d\[dev\]"):
        mod.rgb_to_hsv
