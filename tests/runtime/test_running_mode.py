"""Running modes enforced as in MediaPipe: each mode has its one call; LIVE_STREAM's callback and drop policy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fa3d.runtime import FaceAligner, FaceAlignerOptions, RunningMode
from fa3d.runtime.backends import open_backend
from fa3d.runtime.live_stream import LatestFrameWorker
from tests.helpers.plumbing import BlobDetector, blob_frame


def _aligner(model, **opts):
    return FaceAligner(open_backend(model), FaceAlignerOptions(**opts), detector=BlobDetector())


def test_modes_from_enum_and_strings():
    assert FaceAlignerOptions().mode is RunningMode.IMAGE
    assert FaceAlignerOptions(mode="video").mode is RunningMode.VIDEO
    assert FaceAlignerOptions(mode=RunningMode.VIDEO).mode == "video"  # a str enum: old comparisons hold
    assert FaceAlignerOptions(mode="live_stream", result_callback=print).mode is RunningMode.LIVE_STREAM
    for gone in ("live", "stream"):  # "live" was a deprecated alias of "video": removed
        with pytest.raises(ValueError, match="mode must be one of"):
            FaceAlignerOptions(mode=gone)


def test_live_stream_needs_a_callback_and_only_there():
    with pytest.raises(ValueError, match="result_callback"):
        FaceAlignerOptions(mode=RunningMode.LIVE_STREAM)
    with pytest.raises(ValueError, match="result_callback"):
        FaceAlignerOptions(mode=RunningMode.VIDEO, result_callback=lambda *a: None)


@pytest.mark.parametrize("mode,refused", [
    (RunningMode.IMAGE, ("process_video", "process_async")),
    (RunningMode.VIDEO, ("process", "process_async")),
    (RunningMode.LIVE_STREAM, ("process", "process_video")),
])
def test_each_mode_refuses_the_other_calls(plumbing_model, mode, refused):
    cb = (lambda *a: None) if mode is RunningMode.LIVE_STREAM else None
    with _aligner(plumbing_model, mode=mode, result_callback=cb) as al:
        for call in refused:
            args = (blob_frame(),) if call == "process" else (blob_frame(), 0.0)
            with pytest.raises(ValueError, match=rf"{call}\(\) is not for RunningMode.{mode.name}"):
                getattr(al, call)(*args)


def test_live_stream_delivers_tracked_results_to_the_callback(plumbing_model):
    got = []
    with _aligner(plumbing_model, mode=RunningMode.LIVE_STREAM,
                  result_callback=lambda faces, frame, ts: got.append((ts, faces))) as al:
        for i in range(5):
            al.process_async(blob_frame(centre=(300 + 4 * i, 240)), i * 33.0)
            assert al.wait_idle(10)
        with pytest.raises(ValueError, match="timestamps must not go back"):
            al.process_async(blob_frame(), 0.0)
    assert [ts for ts, _ in got] == [i * 33.0 for i in range(5)] and al.dropped_frames == 0
    assert all(len(faces) == 1 and faces[0].track_id == 0 for _, faces in got)


def test_latest_frame_wins_while_busy():
    release, started, seen = threading.Event(), threading.Event(), []

    def slow(frame, ts):
        started.set()
        release.wait(10)
        return [ts]

    w = LatestFrameWorker(slow, lambda faces, frame, ts: seen.append(ts))
    frame = np.zeros((2, 2, 3), np.uint8)
    w.submit(frame, 1.0)
    assert started.wait(10)
    for ts in (2.0, 3.0, 4.0):  # the worker is busy with frame 1: each replaces the one waiting
        w.submit(frame, ts)
    release.set()
    w.close()
    assert seen == [1.0, 4.0] and w.dropped == 2


def test_worker_errors_reach_the_caller():
    w = LatestFrameWorker(lambda f, ts: 1 / 0, lambda *a: None)
    w.submit(np.zeros((2, 2, 3), np.uint8), 0.0)
    assert w.wait_idle(10)
    with pytest.raises(ZeroDivisionError):
        w.submit(np.zeros((2, 2, 3), np.uint8), 1.0)
    w.close()


def test_one_place_names_the_model(plumbing_model):
    """from_artifact(path) names the model; the options have no second name for it (model_path is gone)."""
    with pytest.raises(TypeError, match="model_path"):
        FaceAlignerOptions(model_path=str(plumbing_model))
    with FaceAligner.from_artifact(plumbing_model, FaceAlignerOptions()) as al:
        assert al.backend.path == plumbing_model


def test_live_stream_callback_error_reaches_the_caller_and_close_still_releases(plumbing_model):
    def boom(faces, frame, ts):
        raise RuntimeError("callback failed")

    al = _aligner(plumbing_model, mode=RunningMode.LIVE_STREAM, result_callback=boom)
    al.process_async(blob_frame(), 0.0)
    assert al.wait_idle(10)
    with pytest.raises(RuntimeError, match="callback failed"):  # the next call raises the worker's error
        al.process_async(blob_frame(), 33.0)
    al.process_async(blob_frame(), 66.0)
    assert al.wait_idle(10)
    with pytest.raises(RuntimeError, match="callback failed"):  # close raises a kept error too ...
        al.close()
    with pytest.raises(RuntimeError, match="closed"):  # ... and has released the aligner all the same
        al.process_async(blob_frame(), 99.0)
