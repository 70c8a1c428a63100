"""Hostile arguments to the public API (FaceAligner, FaceAlignerOptions, OneEuroOptions): NaN and infinite
timestamps and boxes, absurd box counts (bounded memory), wrong types and ranges of every option."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from fa3d.runtime import FaceAligner, FaceAlignerOptions
from fa3d.runtime.aligner import ALIGN_CHUNK
from fa3d.runtime.policy import MAX_FACES_PER_CALL
from fa3d.runtime.backends import open_backend
from fa3d.runtime.smoothing import OneEuroOptions
from tests.helpers.plumbing import BlobDetector, blob_frame


def _video_aligner(model, smooth=True):
    opts = FaceAlignerOptions(mode="video", smoothing=OneEuroOptions(enabled=smooth))
    return FaceAligner(open_backend(model), opts, detector=BlobDetector())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, "10", None, True, np.array([1.0])])
def test_bad_timestamps_are_refused_before_any_state_changes(plumbing_model, bad):
    frame = blob_frame()
    with _video_aligner(plumbing_model) as al:
        first = al.process_video(frame, 0.0)
        with pytest.raises(ValueError, match="timestamp_ms must be a finite number >= 0"):
            al.process_video(frame, bad)
        later = al.process_video(frame, 33.0)  # the stream goes on: the bad call changed nothing
        later2 = al.process_video(frame, 66.0)
    assert len(first) == len(later) == len(later2) == 1
    for f in (later[0], later2[0]):
        assert np.isfinite(f.landmarks).all() and np.isfinite(f.rotation).all()


def test_nan_timestamp_never_poisons_the_smoothing(plumbing_model):
    frame = blob_frame()
    with _video_aligner(plumbing_model) as al:
        al.process_video(frame, 0.0)
        for bad in (math.nan, math.nan):
            with pytest.raises(ValueError):
                al.process_video(frame, bad)
        al.process_video(frame, 20.0)
        with pytest.raises(ValueError, match="must not go back"):  # the order check still works
            al.process_video(frame, 10.0)
        faces = al.process_video(frame, 40.0)
    assert np.isfinite(faces[0].landmarks).all()


def test_ten_thousand_boxes_are_refused_at_once(plumbing_model):
    boxes = np.tile([[10.0, 10.0, 60.0, 60.0]], (10_000, 1))
    with FaceAligner.from_artifact(plumbing_model) as al:
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match=f"at most {MAX_FACES_PER_CALL}"):
            al.process(blob_frame(), boxes=boxes)
        assert time.perf_counter() - t0 < 1.0


def test_the_largest_allowed_call_runs_in_bounded_chunks(plumbing_model, monkeypatch):
    boxes = np.tile([[100.0, 100.0, 220.0, 240.0]], (MAX_FACES_PER_CALL, 1))
    with FaceAligner.from_artifact(plumbing_model) as al:
        sizes = []
        real = al.backend.infer
        monkeypatch.setattr(al.backend, "infer", lambda x: sizes.append(len(x)) or real(x))
        faces = al.process(blob_frame(), boxes=boxes)
    assert len(faces) == MAX_FACES_PER_CALL
    assert max(sizes) == ALIGN_CHUNK and sum(sizes) == MAX_FACES_PER_CALL
    np.testing.assert_allclose(faces[0].landmarks, faces[-1].landmarks)  # chunking changes no result


@pytest.mark.parametrize("boxes,needle", [
    ([[10, 10, 60, math.nan]], "NaN or infinite"),
    ([[10, 10, math.inf, 60]], "NaN or infinite"),
    ([[60, 10, 10, 60]], "x2 > x1"),
    ([[10, 10, 10, 60]], "x2 > x1"),
    ([10, 10, 60], "shape (B, 4)"),
    ([[[10, 10, 60, 60]]], "shape (B, 4)"),
    ([["a", "b", "c", "d"]], "numbers"),
    ("boxes", "numbers"),
])
def test_bad_boxes_give_the_package_error(plumbing_model, boxes, needle):
    with FaceAligner.from_artifact(plumbing_model) as al, pytest.raises(ValueError) as e:
        al.process(blob_frame(), boxes=boxes)
    assert needle in str(e.value)


def test_one_box_as_a_flat_list_and_no_boxes_are_fine(plumbing_model):
    with FaceAligner.from_artifact(plumbing_model) as al:
        assert len(al.process(blob_frame(), boxes=[200, 160, 320, 320])) == 1
        assert al.process(blob_frame(), boxes=np.zeros((0, 4))) == []


@pytest.mark.parametrize("field,value", [
    ("max_faces", 0), ("max_faces", MAX_FACES_PER_CALL + 1), ("max_faces", 2.5), ("max_faces", "4"),
    ("max_faces", True), ("det_every_n", 0), ("det_every_n", None), ("num_threads", 0), ("num_threads", -1),
    ("num_threads", 1.5), ("fov_deg", 0.0), ("fov_deg", 180.0), ("fov_deg", math.nan), ("fov_deg", "70"),
    ("min_confidence", math.nan), ("min_confidence", "0.5"), ("min_confidence", 1.5), ("eye_span_m", 0.0),
    ("eye_span_m", -0.06), ("eye_span_m", math.inf), ("device", "gpu"), ("device", None), ("detector", None),
    ("detector", ""), ("smoothing", None), ("smoothing", True), ("intrinsics", {"fx": 1}), ("pose_source", "nose"),
])
def test_every_option_is_checked_and_named(field, value):
    with pytest.raises(ValueError, match=f"FaceAlignerOptions.{field} must be"):
        FaceAlignerOptions(**{field: value})


def test_bad_mode_and_callback():
    with pytest.raises(ValueError):
        FaceAlignerOptions(mode="bogus")
    with pytest.raises(ValueError, match="result_callback must be a callable"):
        FaceAlignerOptions(mode="live_stream", result_callback=5)


@pytest.mark.parametrize("kw", [{"min_cutoff": math.nan}, {"beta": math.inf}, {"d_cutoff": 0.0}, {"beta": -1.0},
                                {"min_cutoff": "1"}])
def test_one_euro_options_refuse_non_finite_values(kw):
    with pytest.raises(ValueError, match="One Euro options need finite"):
        OneEuroOptions(**kw)


def test_a_closed_aligner_says_so(plumbing_model):
    al = FaceAligner.from_artifact(plumbing_model)
    al.close()
    with pytest.raises(RuntimeError, match="closed"):
        al.process(blob_frame())


# ---------------------------------------------------------------- command-line arguments (the CLIs' API)
@pytest.mark.parametrize("argv,option", [
    (["--fov", "0"], "--fov"), (["--fov", "-30"], "--fov"), (["--fov", "180"], "--fov"), (["--fov", "nan"], "--fov"),
    (["--threads", "-1"], "--threads"), (["--threads", "0"], "--threads"), (["--threads", "two"], "--threads"),
    (["--det-every", "0"], "--det-every"), (["--max-faces", "0"], "--max-faces"),
    (["--max-faces", "100000"], "--max-faces"), (["--min-confidence", "1.5"], "--min-confidence"),
    (["--max-frames", "0"], "--max-frames"), (["--smooth-min-cutoff", "0"], "--smooth-min-cutoff"),
    (["--smooth-beta", "inf"], "--smooth-beta"),
])
def test_fa_run_numbers_out_of_range_are_usage_errors(argv, option, capsys):
    from fa3d.runtime.cli_run import main

    assert main([*argv, "--headless"]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_other_clis_range_check_their_numbers(tmp_path, capsys):
    from fa3d.calibration.cli import main as calib_main
    from fa3d.runtime.bench import main as bench_main

    assert bench_main(["--batch", "100000", "--no-pipeline"]) == 2
    assert "at most 1024" in capsys.readouterr().err
    assert bench_main(["--iters", "0"]) == 2 and bench_main(["--max-faces", "999"]) == 2
    assert calib_main([str(tmp_path), "--model", "m.onnx", "--out", "o.npz", "--max", "0"]) == 2
    assert calib_main([str(tmp_path), "--model", "m.onnx", "--out", "o.npz", "--every", "-1"]) == 2
    pytest.importorskip("torch")
    from fa3d.export.latency import main as latency_main
    from fa3d.training.cli_eval import main as eval_main
    from fa3d.training.cli_label import main as label_main

    assert latency_main(["--calls", "0"]) == 2
    assert eval_main(["m.onnx", "--dataset", "aflw", "--data", str(tmp_path), "--limit", "0"]) == 2
    assert label_main([str(tmp_path), str(tmp_path / "o"), "--every", "0"]) == 2
    assert label_main([str(tmp_path), str(tmp_path / "o"), "--min-detection-confidence", "7"]) == 2
    assert "Traceback" not in capsys.readouterr().err
