"""A detector whose memory and per-frame work do not grow with the frame (issue 24): BlazeFace runs its windows
in fixed-size batches without copying the frame, the tracker's scans are bounded steps (no whole-pyramid
stall on a lost face or a scheduled re-detection), YuNet sees at most ``max_side`` pixels. A stand-in
session replaces the network: nothing here allocates more than the test frames."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fa3d.runtime.detectors.blazeface import ANCHORS
from fa3d.runtime.detectors.blazeface_detector import BlazeFaceDetector, plan_windows
from fa3d.runtime.track import FaceTracker, TrackerOptions


class CountingSession:
    """Stands for the BlazeFace network: no face anywhere; records the batch of every call."""

    def __init__(self, max_batch: int | None = None) -> None:
        self.max_batch = max_batch
        self.batches: list[int] = []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 128, 128)
        self.batches.append(len(batch))
        n = len(batch)
        return [np.zeros((n, len(ANCHORS), 16), np.float32), np.full((n, len(ANCHORS), 1), -50.0, np.float32)]


@pytest.mark.parametrize("size", [(4000, 3000), (100000, 16)])
def test_windows_go_through_the_network_in_fixed_size_batches(size):
    w, h = size
    session = CountingSession()
    det = BlazeFaceDetector(session=session, batch_windows=16)
    det.detect(np.zeros((h, w, 3), np.uint8))
    assert sum(session.batches) == len(plan_windows(w, h)) > 100
    assert max(session.batches) <= 16


def test_a_session_with_a_fixed_batch_gets_at_most_that_many_windows():
    session = CountingSession(max_batch=4)
    BlazeFaceDetector(session=session).detect(np.zeros((720, 1280, 3), np.uint8))
    assert max(session.batches) <= 4 and sum(session.batches) == len(plan_windows(1280, 720))


def test_detect_memory_does_not_grow_with_the_frame():
    """Python-visible allocations while detecting on a 4000x3000 frame (36 MB): no frame copy, no stack of
    every window (870 windows would be 170 MB of network input)."""
    frame = np.zeros((3000, 4000, 3), np.uint8)
    det = BlazeFaceDetector(session=CountingSession())
    tracemalloc.start()
    try:
        det.detect(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB"


class Counting:
    """Wraps a session and records the batch of every call."""

    def __init__(self, inner) -> None:
        self.inner, self.max_batch, self.batches = inner, inner.max_batch, []

    def run(self, batch):
        self.batches.append(len(batch))
        return self.inner.run(batch)


def test_the_tracker_never_scans_a_whole_pyramid_on_one_frame():
    """A face tracked, lost (it leaves), found again, with scheduled sweeps in between, on 1920x1080 frames:
    every frame's detector work stays within a search step plus the region check, and a tracked frame runs
    a step of the sweep (ceil(sweep / det_every_n) windows), never the whole sweep or pyramid."""
    import cv2

    from fa3d.runtime.default_model import sample_path

    det = BlazeFaceDetector()
    det.session = session = Counting(det.session)
    portrait = cv2.imread(str(sample_path("astronaut.png")))
    with_face = np.full((1080, 1920, 3), 100, np.uint8)
    with_face[400:912, 700:1212] = portrait
    empty = np.full((1080, 1920, 3), 100, np.uint8)
    tr = FaceTracker(det, TrackerOptions(det_every_n=10))
    per_frame, tracked = [], []
    for frame in [with_face] * 25 + [empty] * 3 + [with_face] * 12:
        before = sum(session.batches)
        boxes, _, _ = tr.boxes_for_frame(frame)
        lm = np.stack([[[b[0], b[1], 0.0], [b[2], b[3], 0.0]] for b in boxes]) if len(boxes) else np.zeros((0, 2, 3))
        tr.update(lm, np.ones(len(boxes)))
        per_frame.append(sum(session.batches) - before)
        tracked.append(len(boxes))
    step = -(-det.sweep_length(1920, 1080) // 10)
    assert sum(tracked) >= 30, tracked
    assert max(per_frame) <= det.search_windows + 1, per_frame
    steady = [n for i, n in enumerate(per_frame) if i and tracked[i] and tracked[i - 1]]
    assert len(steady) >= 30 and set(steady) == {step + 1}, per_frame  # the region check and a sweep step


def test_yunet_never_runs_on_more_than_max_side_pixels(tmp_path, monkeypatch):
    import cv2

    from fa3d.runtime.detectors.yunet import YuNetDetector

    sizes = []

    class FakeYN:
        def setInputSize(self, size):  # noqa: N802 - OpenCV's name
            sizes.append(tuple(size))

        def detect(self, image):
            assert image.shape[1::-1] == sizes[-1]
            return 1, None

    monkeypatch.setattr(cv2.FaceDetectorYN, "create", lambda *a, **k: FakeYN())
    model = tmp_path / "face_detection_yunet.onnx"
    model.write_bytes(b"stand-in")
    det = YuNetDetector(model, max_side=1920)
    det.detect(np.zeros((6000, 8000, 3), np.uint8))
    assert max(max(s) for s in sizes) <= 1920
