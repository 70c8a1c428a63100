"""Hostile inputs, by category: images, video and streams, models and engines, checkpoints and configs, API
arguments, outputs, signals (issue 15). Every case expects one clear line and a documented exit code (CLIs) or
the package's ValueError (API), never a traceback, never a lost or overwritten file.

The fixtures reuse the shared plumbing model (tests/helpers/plumbing.py: not a face model)."""

from __future__ import annotations

import pytest

from tests.helpers.plumbing import BlobDetector


@pytest.fixture
def blob_detector(monkeypatch):
    """fa-run and FaceAligner use a test-only blob detector instead of the default detector."""
    import fa3d.runtime.aligner as aligner_mod

    det = BlobDetector()
    monkeypatch.setattr(aligner_mod, "make_detector", lambda spec: det)
    return det
