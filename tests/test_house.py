"""House rules checked on the source tree: function length, the import contract's coverage, one home per concept."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "data", "training", "export", "calibration")
MAX_LINES = 100
#: functions allowed over MAX_LINES for now, each with the reason
ALLOWED_LONG: dict[str, str] = {}


def _functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    stack = [(node, "") for node in tree.body]
    while stack:
        node, prefix = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield name, node.end_lineno - node.lineno + 1
            stack += [(child, f"{name}.") for child in node.body]


def long_functions(root: Path = REPO) -> dict[str, int]:
    """``{"pkg/module.py::qualname": lines}`` of every function over MAX_LINES in the four packages."""
    found = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            for name, lines in _functions(path):
                if lines > MAX_LINES:
                    found[f"{path.relative_to(root).as_posix()}::{name}"] = lines
    return found


def test_no_function_over_100_lines():
    offenders = {k: v for k, v in long_functions().items() if k not in ALLOWED_LONG}
    assert not offenders, "functions over 100 lines (split them by responsibility): " + ", ".join(
        f"{k} ({v} lines)" for k, v in sorted(offenders.items()))


def test_length_check_finds_a_long_function(tmp_path):
    pkg = tmp_path / "runtime"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (pkg / "m.py").write_text(f"class C:\n    def short(self):\n        pass\n\n\ndef long():\n{body}\n")
    assert long_functions(tmp_path) == {"runtime/m.py::long": MAX_LINES + 1}


def test_allow_list_is_not_stale():
    found = long_functions()
    assert set(ALLOWED_LONG) <= set(found), f"no longer over {MAX_LINES} lines, drop from ALLOWED_LONG: " \
        f"{sorted(set(ALLOWED_LONG) - set(found))}"


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _covers(sources: list[str], module: str) -> bool:
    return any(module == s or module.startswith(s + ".") for s in sources)


def test_runtime_core_contract_covers_every_runtime_module():
    """The contract that keeps the runtime core off fa3d.data, the ROS layer and its packages, torch, onnx, scipy
    and matplotlib covers every module of runtime/ (listed, or inside a listed package) outside the ROS layer: a new
    runtime module cannot slip past it. Only fa-run's command line may open the ROS layer."""
    core = next(c for c in _contracts() if c["type"] == "forbidden" and "fa3d.data" in c["forbidden_modules"])
    assert {"fa3d.runtime.ros", "rosbags", "foxglove", "rclpy", "torch", "onnx", "scipy", "matplotlib"} <= set(
        core["forbidden_modules"])
    assert core.get("ignore_imports") == ["fa3d.runtime.cli_run -> fa3d.runtime.ros.fa_run"]
    modules = {"fa3d.runtime." + ".".join(p.relative_to(REPO / "runtime").with_suffix("").parts)
               for p in (REPO / "runtime").rglob("*.py")}
    modules = {m.removesuffix(".__init__") for m in modules if not _covers(["fa3d.runtime.ros"], m)}
    missed = sorted(m for m in modules - {"fa3d.runtime"} if not _covers(core["source_modules"], m))
    assert not missed, f"runtime modules outside the core contract: {missed}"
    assert not [s for s in core["source_modules"] if _covers(["fa3d.runtime.ros"], s)]


def test_one_layers_contract_states_the_whole_rule():
    layers = [c for c in _contracts() if c["type"] == "layers"]
    assert len(layers) == 1
    assert layers[0]["layers"] == ["fa3d.export", "fa3d.training | fa3d.calibration", "fa3d.data", "fa3d.runtime"]
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert set(packages) == set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
                                ["root_packages"]), "every package folder is a root package of the contract"


@pytest.mark.slow
def test_import_contract_holds():
    """The layers of the README's Architecture section (also run by `make test` before pytest)."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e .[dev])")
    res = subprocess.run([exe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-3000:]


def _lazy_imports(path: Path) -> list[str]:
    """The module names given to ``lazy_import("...")`` in a file."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        if getattr(node.func, "id", getattr(node.func, "attr", None)) == "lazy_import":
            names.append(node.args[0].value)
    return names


def _files_of(module: str) -> list[Path]:
    """The source files of a module or package named in a contract (``fa3d.runtime.aligner``)."""
    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    top = next(t for t in dirs if module == t or module.startswith(t + "."))
    base = REPO / dirs[top] / Path(*module[len(top):].lstrip(".").split(".")) if module != top else REPO / dirs[top]
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def test_lazy_imports_obey_the_contracts():
    """grimp does not see ``lazy_import("torch")``: the forbidden contracts are checked on those names here,
    and no fa3d module is imported that way (the layers must see every import between our packages)."""
    offenders = []
    for c in _contracts():
        if c["type"] != "forbidden":
            continue
        banned = [m for m in c["forbidden_modules"] if not m.startswith("fa3d.")]
        for source in c["source_modules"]:
            for path in _files_of(source):
                offenders += [f"{path.relative_to(REPO)}: {name}" for name in _lazy_imports(path)
                              if any(name == b or name.startswith(b + ".") for b in banned)]
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in _lazy_imports(path) if n.startswith("fa3d")]
    assert not offenders, offenders
    assert "onnxruntime" in _lazy_imports(REPO / "runtime" / "backends" / "onnxrt.py")  # the scan finds them


def test_jitter_box_moves_and_scales_about_the_centre():
    from fa3d.runtime.preprocess import jitter_box

    np.testing.assert_allclose(jitter_box(np.array([10.0, 20.0]), 8.0), [6, 16, 14, 24])
    np.testing.assert_allclose(jitter_box(np.array([10.0, 20.0]), np.array([8.0, 4.0]), 0.5, np.array([0.25, -0.5])),
                               [10, 17, 14, 19])


def test_one_image_suffix_list_and_one_video_reader():
    """No module but runtime/sources.py spells out the image suffixes or opens a cv2.VideoCapture on a file."""
    offenders = []
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            text = path.read_text(encoding="utf-8")
            if rel != "runtime/sources.py" and '".jpeg", ".png"' in text:
                offenders.append(f"{rel}: image suffix list")
            # fa-run's output writer and the verified-video helper write files; only sources.py reads them
            if rel not in ("runtime/sources.py", "data/datasets/videofile.py") and "cv2.VideoCapture(" in text:
                offenders.append(f"{rel}: own video reader")
    assert not offenders, offenders


#: files that still restate a policy value, each with the reason
POLICY_EXCEPTIONS: dict[str, str] = {}


def test_version_policy_in_one_place():
    from fa3d.runtime import policy
    from fa3d.runtime.backends import trt

    assert trt.MIN_TENSORRT is policy.MIN_TENSORRT
    offenders = []
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            rel = path.relative_to(REPO).as_posix()
            if rel == "runtime/policy.py" or rel in POLICY_EXCEPTIONS:
                continue
            text = path.read_text(encoding="utf-8")
            if 'Version("8.5")' in text or "OPSET = " in text or 'default="haar"' in text:
                offenders.append(rel)
    assert not offenders, f"version policy or defaults restated outside runtime/policy.py: {offenders}"
