"""fa-run's GStreamer detection: a pipeline (a Jetson CSI camera) with an OpenCV built without GStreamer
(pip's opencv-python) fails at once with what to install, instead of "cannot open"."""

from __future__ import annotations

import pytest

from fa3d.runtime import sources


def test_gstreamer_support_reads_the_build_information(monkeypatch):
    monkeypatch.setattr(sources.cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:  NO\n")
    assert not sources.gstreamer_support()
    monkeypatch.setattr(sources.cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:  YES (1.20.3)\n")
    assert sources.gstreamer_support()


def test_pipeline_without_gstreamer_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sources, "gstreamer_support", lambda: False)
    with pytest.raises(sources.SourceError, match=r"built without GStreamer.*apt install python3-opencv.*"
                                                  r"--system-site-packages"):
        sources.open_source(sources.jetson_csi_pipeline())
