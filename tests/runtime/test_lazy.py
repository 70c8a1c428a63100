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
