"""Shared fixtures: where the research data lives, the gpu and cuda markers' skip logic, and the runtime plumbing
(tests/helpers/plumbing.py: a tiny ONNX model with the real I/O contract, not a face model; trt_standin.py: THE
stand-in for tensorrt and pycuda.driver, build and runtime). Test helpers are imported as ``tests.helpers.X``
(pyproject.toml puts the repository root on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FA3D_SHARED_DATA", REPO.parent / "shared" / "data"))


def _cuda_probe() -> str | None:
    """Why CUDA training cannot run here, or None (imports torch: called only when a ``cuda`` test was collected)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the [train] extra)"
    import torch

    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: a CPU build of torch, or no NVIDIA GPU visible"
    return None


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests (TensorRT + pycuda on an NVIDIA device) and ``cuda`` tests (CUDA torch) skip, with the
    reason, where what they need is absent."""
    from fa3d.runtime.backends.trt import gpu_probe  # never constructs a TensorRT object

    probes = {"gpu": gpu_probe, "cuda": _cuda_probe}
    for marker, probe in probes.items():
        marked = [item for item in items if item.get_closest_marker(marker) is not None]
        reason = probe() if marked else None
        if reason is not None:
            skip = pytest.mark.skip(reason=reason)
            for item in marked:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or a clean skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"research data not found at {SHARED_DATA} (set FA3D_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def format_samples(shared_data: Path) -> Path:
    p = shared_data / "format_samples"
    if not p.is_dir():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def aflw19k(shared_data: Path) -> Path:
    p = shared_data / "aflw19k"
    if not (p / "labels.npz").is_file():
        pytest.skip(f"{p}/labels.npz not found")
    return p


@pytest.fixture(scope="session")
def plumbing_model(tmp_path_factory):
    """A tiny ONNX model with the real I/O contract and a sidecar (input 64x64, dynamic batch)."""
    from tests.helpers.plumbing import make_plumbing_model
    return make_plumbing_model(tmp_path_factory.mktemp("model") / "plumbing.onnx", size=64)


@pytest.fixture(scope="session")
def blob_video(tmp_path_factory):
    """A 640x480, 30-frame MJPG video of one bright face-sized blob moving right and down."""
    from tests.helpers.plumbing import write_blob_video
    return write_blob_video(tmp_path_factory.mktemp("video") / "blob.avi", n_frames=30)
