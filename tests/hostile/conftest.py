"""Hostile inputs, by category: images, video and streams, models and engines, checkpoints and configs, API
arguments, outputs, signals (issue 15). Every case expects one clear line and a documented exit code (CLIs) or
the package's ValueError (API), never a traceback, never a lost or overwritten file.

The fixtures reuse the runtime tests' plumbing model (tests/runtime/rt_helpers.py: not a face model)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))  # rt_helpers (a tests/ folder)

from rt_helpers import BlobDetector, make_plumbing_model, write_blob_video  # noqa: E402


@pytest.fixture(scope="session")
def plumbing_model(tmp_path_factory):
    """A tiny ONNX model with the real I/O contract and a sidecar (input 64x64, dynamic batch)."""
    return make_plumbing_model(tmp_path_factory.mktemp("model") / "plumbing.onnx", size=64)


@pytest.fixture(scope="session")
def blob_video(tmp_path_factory):
    """A 640x480, 30-frame MJPG video of one bright face-sized blob."""
    return write_blob_video(tmp_path_factory.mktemp("video") / "blob.avi", n_frames=30)


@pytest.fixture
def blob_detector(monkeypatch):
    """fa-run and FaceAligner use a test-only blob detector instead of the Haar cascade."""
    import fa3d.runtime.aligner as aligner_mod

    det = BlobDetector()
    monkeypatch.setattr(aligner_mod, "make_detector", lambda spec: det)
    return det
