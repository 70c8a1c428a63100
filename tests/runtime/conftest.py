"""Fixtures of the runtime tests (see rt_helpers.py: the plumbing model is not a face model)."""

from __future__ import annotations

import pytest

from rt_helpers import make_plumbing_model, write_blob_video


@pytest.fixture(scope="session")
def plumbing_model(tmp_path_factory):
    """A tiny ONNX model with the real I/O contract and a sidecar (input 64x64, dynamic batch)."""
    return make_plumbing_model(tmp_path_factory.mktemp("model") / "plumbing.onnx", size=64)


@pytest.fixture(scope="session")
def blob_video(tmp_path_factory):
    """A 640x480, 30-frame MJPG video of one bright face-sized blob moving right and down."""
    return write_blob_video(tmp_path_factory.mktemp("video") / "blob.avi", n_frames=30)
