"""The live stream cannot be broken (issue 24): a camera loop that refills one buffer gets the results of the
frame it submitted; close() leaves no worker thread alive, whatever else is being submitted; waiting for the
worker from inside result_callback raises instead of deadlocking; a video whose frame size changes on every
frame loses no frame. Every wait has a timeout: a regression fails, it never hangs the suite."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fa3d.runtime.aligner as aligner_mod
from fa3d.runtime import FaceAligner, FaceAlignerOptions
from fa3d.runtime.backends import open_backend
from rt_helpers import BlobDetector, blob_frame


def _live(model, callback, detector=None):
    return FaceAligner(open_backend(model), FaceAlignerOptions(mode="live_stream", result_callback=callback),
                       detector=detector or BlobDetector())


class _GatedDetector(BlobDetector):
    """The blob detector, held at its first call until ``go`` is set (so the caller can act meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.go = threading.Event(), threading.Event()

    def detect(self, image_bgr):
        self.entered.set()
        assert self.go.wait(10), "the test never released the detector"
        return super().detect(image_bgr)


def test_a_camera_loop_that_refills_one_buffer_gets_the_results_of_the_frame_it_submitted(plumbing_model):
    got = []
    det = _GatedDetector()
    with _live(plumbing_model, lambda faces, frame, ts: got.append((len(faces), frame.copy(), ts)), det) as al:
        buf = blob_frame()  # the capture buffer, refilled in place for every frame
        submitted = buf.copy()
        al.process_async(buf, 0.0)
        assert det.entered.wait(10)
        buf[:] = 0  # the camera writes the next frame into the same buffer while the first is processed
        det.go.set()
        assert al.wait_idle(10)
    assert len(got) == 1
    n_faces, frame, ts = got[0]
    assert ts == 0.0 and n_faces == 1, "the face of the submitted frame was lost"
    np.testing.assert_array_equal(frame, submitted)  # the callback sees the frame that was submitted


def test_close_while_a_frame_is_submitted_leaves_no_worker_thread(plumbing_model, monkeypatch):
    """close() in one thread while another thread is inside process_async (starting the worker)."""
    workers, created, go = [], threading.Event(), threading.Event()
    real = aligner_mod.LatestFrameWorker

    def slow_start(*a, **k):  # the worker exists, but process_async has not finished with it yet
        w = real(*a, **k)
        workers.append(w)
        created.set()
        go.wait(10)
        return w

    monkeypatch.setattr(aligner_mod, "LatestFrameWorker", slow_start)
    al = _live(plumbing_model, lambda *a: None)
    errors = []

    def submit():
        try:
            al.process_async(blob_frame(), 0.0)
        except RuntimeError as e:  # refused as closed: fine
            errors.append(e)

    t = threading.Thread(target=submit)
    t.start()
    assert created.wait(10)
    closer = threading.Thread(target=al.close)
    closer.start()
    time.sleep(0.2)  # close() is now waiting (or, before the fix, already done)
    go.set()
    closer.join(10)
    t.join(10)
    assert not closer.is_alive() and not t.is_alive()
    assert workers and not workers[0]._thread.is_alive(), "close() returned with the worker thread alive"


def test_wait_idle_inside_the_callback_raises_instead_of_deadlocking(plumbing_model):
    seen = []

    def callback(faces, frame, ts):
        try:
            al.wait_idle()
        except RuntimeError as e:
            seen.append(str(e))
            raise

    al = _live(plumbing_model, callback)
    al.process_async(blob_frame(), 0.0)
    assert al.wait_idle(5), "the worker deadlocked waiting for itself"
    assert seen and "inside result_callback" in seen[0]
    with pytest.raises(RuntimeError, match="inside result_callback"):  # the callback's error reaches the caller
        al.close()
    assert al.wait_idle(1) and al._worker is None


def test_close_inside_the_callback_raises_and_the_stream_still_closes(plumbing_model):
    def callback(faces, frame, ts):
        al.close()

    al = _live(plumbing_model, callback)
    al.process_async(blob_frame(), 0.0)
    assert al.wait_idle(5)
    outcome = []

    def close_it():
        try:
            al.close()
            outcome.append("returned")
        except RuntimeError as e:
            outcome.append(str(e))

    closer = threading.Thread(target=close_it)
    closer.start()
    closer.join(5)
    assert not closer.is_alive(), "close() hangs"
    assert outcome and "close() was called inside result_callback" in outcome[0], outcome  # not lost
    with pytest.raises(RuntimeError, match="closed"):
        al.process_async(blob_frame(), 33.0)


def test_a_video_whose_frame_size_changes_on_every_frame_loses_no_frame(plumbing_model):
    sizes = [(640, 480), (320, 240), (960, 720)]
    opts = FaceAlignerOptions(mode="video")
    found, ids = [], set()
    with FaceAligner(open_backend(plumbing_model), opts, detector=BlobDetector()) as al:
        for i in range(18):
            w, h = sizes[i % 3]
            faces = al.process_video(blob_frame((w, h), (w / 2, h / 2), (w // 10, h // 6)), i * 33.0)
            found.append(len(faces))
            ids |= {f.track_id for f in faces}
            for f in faces:  # the box is on the blob of THIS frame, in this frame's pixels
                cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
                assert abs(cx - w / 2) < w * 0.05 and abs(cy - h / 2) < h * 0.05
    assert found == [1] * 18, f"faces per frame: {found}"
    assert ids == {0}, "the face keeps its track ID through the size changes"
