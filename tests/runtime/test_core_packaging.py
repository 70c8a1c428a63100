"""Packaging: one import package, light runtime import, and a wheel with nothing else at the top level."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_runtime_import_is_light():
    code = ("import sys, fa3d.runtime, fa3d.runtime.pose, fa3d.runtime.preprocess, fa3d.runtime.metadata; "
            "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'pycuda', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing fa3d.runtime imported {out.stdout.strip()}"


@pytest.mark.slow
def test_wheel_holds_only_the_fa3d_package_and_every_module(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), str(REPO)],
                           check=True, capture_output=True, text=True)
    log = build.stdout + build.stderr
    assert "is absent from the `packages` configuration" not in log, \
        "setuptools would drop a data folder: list it in pyproject.toml's packages and package-data"
    wheel = next(tmp_path.glob("fa3d-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"fa3d"}, tops
    for folder in ("runtime", "data", "training", "export", "calibration"):
        for src in (REPO / folder).rglob("*.py"):
            rel = src.relative_to(REPO).as_posix()
            assert f"fa3d/{rel}" in names, f"{rel} is missing from the wheel: add its package to pyproject.toml"
    data = [p for folder in ("runtime/assets", "export/assets") for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")]
    data += list((REPO / "training" / "configs").glob("*.toml"))
    assert "fa3d/runtime/assets/mean_shape_68.npy" in names and "fa3d/runtime/assets/default/model.onnx" in names
    for src in data:
        rel = src.relative_to(REPO).as_posix()
        assert f"fa3d/{rel}" in names, f"{rel} is missing from the wheel: add it to pyproject.toml's package-data"
    tools = {p.stem for p in (REPO / "tools").glob("*.py")} - {"__init__"}
    assert tools and not [n for n in names if n.endswith(".py") and Path(n).stem in tools], \
        "a maintainer tool (tools/) is in the wheel"
