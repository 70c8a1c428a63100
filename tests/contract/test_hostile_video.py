"""Hostile videos and streams: text files FFmpeg would render, empty and random files, missing devices, and
frames the aligner refuses inside an otherwise good stream (skipped and counted, never fatal)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hostile_helpers import one_line_error
from fa3d.runtime.cli_run import main
from fa3d.runtime.sources import Frame, FrameSource, SourceError, open_source
from tests.helpers.plumbing import blob_frame


@pytest.mark.parametrize("name,content", [
    ("notes.txt", "meeting notes\nline two\n"),
    ("clip.mp4", "this is text with a video suffix\n" * 20),
    ("readme", "# no suffix at all\n"),
    ("data.json", '{"a": 1}'),
])
def test_text_files_are_refused_as_videos(tmp_path, plumbing_model, capsys, name, content):
    p = tmp_path / name
    p.write_text(content)
    assert main(["--model", str(plumbing_model), "--source", str(p), "--headless"]) == 3
    line = one_line_error(capsys.readouterr().err, "fa-run")
    why = line.split(str(p), 1)[1]  # (the path itself holds this test's name)
    assert "text" in why or "not a video" in why


class _RendersAnything:
    """An FFmpeg build with the "tty" demuxer opens any text file as a video of rendered text."""

    def __init__(self, *a, **k):
        self.n = 0

    def isOpened(self):
        return True

    def get(self, prop):
        return 3.0 if prop == 7 else 25.0  # CAP_PROP_FRAME_COUNT, CAP_PROP_FPS

    def read(self):
        self.n += 1
        return (True, np.full((48, 64, 3), 200, np.uint8)) if self.n <= 3 else (False, None)

    def release(self):
        pass


def test_text_files_are_refused_even_where_ffmpeg_would_play_them(tmp_path, plumbing_model, capsys, monkeypatch):
    import fa3d.runtime.sources as sources

    monkeypatch.setattr(sources.cv2, "VideoCapture", _RendersAnything)
    p = tmp_path / "notes.txt"
    p.write_text("meeting notes\n")
    assert main(["--model", str(plumbing_model), "--source", str(p), "--headless"]) == 3
    assert "not a video" in one_line_error(capsys.readouterr().err, "fa-run").split(str(p), 1)[1]


def test_empty_and_random_files_are_refused(tmp_path, plumbing_model, capsys):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["--model", str(plumbing_model), "--source", str(empty), "--headless"]) == 3
    assert "empty" in one_line_error(capsys.readouterr().err, "fa-run")
    noise = tmp_path / "noise.avi"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    assert main(["--model", str(plumbing_model), "--source", str(noise), "--headless"]) == 3
    one_line_error(capsys.readouterr().err, "fa-run")


def test_missing_source_and_missing_camera(tmp_path, plumbing_model, capsys):
    assert main(["--model", str(plumbing_model), "--source", str(tmp_path / "nope.mp4"), "--headless"]) == 3
    assert "not found" in one_line_error(capsys.readouterr().err, "fa-run")
    if os.path.exists("/dev/video97"):
        pytest.skip("this machine has a /dev/video97")
    assert main(["--model", str(plumbing_model), "--camera", "97", "--headless"]) == 3
    assert "camera 97" in one_line_error(capsys.readouterr().err, "fa-run")


def test_the_source_is_checked_before_the_model_is_loaded(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert main(["--model", str(tmp_path / "missing.onnx"), "--source", str(tmp_path / "notes.txt"),
                 "--headless"]) == 3
    one_line_error(capsys.readouterr().err, "fa-run")


class _ListSource(FrameSource):
    description = "test frames"

    def __init__(self, frames):
        super().__init__()
        self._frames = frames

    def __iter__(self):
        for i, (t, img) in enumerate(self._frames):
            yield Frame(i, t, img)


def _aligner(model, mode="video"):
    from fa3d.runtime import FaceAligner, FaceAlignerOptions
    from tests.helpers.plumbing import BlobDetector

    from fa3d.runtime.backends import open_backend
    return FaceAligner(open_backend(model), FaceAlignerOptions(mode=mode), detector=BlobDetector())


def test_bad_frames_in_a_stream_are_skipped_and_counted(plumbing_model):
    from fa3d.runtime.frame_loop import run_pipeline

    good = blob_frame()
    frames = [(0.0, good), (33.0, good), (33.0, good),            # a repeated timestamp: accepted (README)
              (66.0, good.astype(np.float32)),                    # a float frame from a bad decoder
              (float("nan"), good), (99.0, good[:, :, :2].copy()), (132.0, good)]
    with _aligner(plumbing_model) as al:
        rep = run_pipeline(al, _ListSource(frames), track=True)
    assert rep.frames == 4 and rep.skipped == 3
    assert "frame 3" in rep.first_skip and "expected an OpenCV" in rep.first_skip
    assert rep.summary()["skipped"] == 3


def test_a_stream_of_only_bad_frames_is_a_source_error_that_says_why(plumbing_model):
    from fa3d.runtime.frame_loop import run_pipeline

    bad = np.zeros((48, 64, 3), np.float32)
    with _aligner(plumbing_model) as al, pytest.raises(SourceError, match="3 skipped, frame 0: expected an OpenCV"):
        run_pipeline(al, _ListSource([(0.0, bad), (1.0, bad), (2.0, bad)]), track=True)


def test_open_source_on_a_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))


@pytest.mark.parametrize("spec", ["rtsp://127.0.0.1:9/none", "gst:videotestsrc num-buffers=0 ! fakesink"])
def test_unreachable_streams_and_pipelines_fail_fast_with_exit_3(plumbing_model, capsys, spec):
    import time

    t0 = time.monotonic()
    assert main(["--model", str(plumbing_model), "--source", spec, "--headless"]) == 3
    assert time.monotonic() - t0 < 20
    err = capsys.readouterr().err
    assert "Traceback" not in err and "fa-run: error:" in err  # (OpenCV's own warnings may precede it)
