"""fa-run end to end on CPU with the plumbing fixture model (a plumbing check, not face accuracy)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import fa3d.runtime.aligner as aligner_mod
from fa3d.runtime import cli_run
from fa3d.runtime.cli_run import main
from fa3d.runtime.metadata import write_metadata
from fa3d.runtime.sources import VideoFileSource
from tests.helpers.plumbing import (BlobDetector, blob_centres, blob_frame, corrupt_avi_frame, count_video_frames,
                                    plumbing_metadata, write_blob_video)


@pytest.fixture
def blob_detector(monkeypatch):
    det = BlobDetector()
    monkeypatch.setattr(aligner_mod, "make_detector", lambda spec: det)
    return det


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if "partial" in p.name)



def test_full_pipeline_on_generated_video(tmp_path, plumbing_model, blob_video, blob_detector, capsys):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    rc = main(["--model", str(plumbing_model), "--source", str(blob_video), "--output", str(out),
               "--json", str(js), "--headless", "--fov", "60"])
    assert rc == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(30)), "one record per frame"
    assert all(len(r["faces"]) == 1 for r in recs), "a face in every frame"
    for r, c in zip(recs, blob_centres(30)):
        f = r["faces"][0]
        lm = np.array(f["landmarks"])
        assert lm.shape == (68, 3) and f["track_id"] == 0
        assert (lm[:, 0] >= 0).all() and (lm[:, 0] < 640).all() and (lm[:, 1] >= 0).all() and (lm[:, 1] < 480).all()
        assert np.hypot(*(lm[:, :2].min(0) + lm[:, :2].max(0)) / 2 - np.array(c)) < 20
        assert set(f) >= {"box", "confidence", "yaw_pitch_roll", "rotation", "head_pose_cam"}
    assert recs[1]["timestamp_ms"] == pytest.approx(33.333, abs=1e-3)
    assert blob_detector.calls == 3, "tracking: the detector ran on frames 0, 10 and 20 only"
    assert count_video_frames(out) == 30
    text = capsys.readouterr().out
    for stage in ("decode", "detect", "preprocess", "infer", "postprocess", "fps"):
        assert stage in text
    assert _leftovers(tmp_path) == []


def test_real_faces_with_haar_on_sample_clip(tmp_path, plumbing_model, monkeypatch, capsys):
    """--detector haar reaches the detector factory and OpenCV's cascade finds the real face of the sample clip."""
    import fa3d.runtime.aligner as aligner_mod
    from fa3d.runtime.default_model import DefaultModelMissing, sample_clip_path

    try:
        sample_clip_path()
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")
    asked, real = [], aligner_mod.make_detector
    monkeypatch.setattr(aligner_mod, "make_detector", lambda spec: asked.append(spec) or real(spec))
    js = tmp_path / "a.jsonl"
    assert main(["--model", str(plumbing_model), "--detector", "haar", "--json", str(js), "--headless",
                 "--max-frames", "30"]) == 0
    assert asked == ["haar"]
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(recs) == 30 and sum(bool(r["faces"]) for r in recs) >= 25


def test_ctrl_c_finalises_shorter_valid_outputs(tmp_path, plumbing_model, blob_video, blob_detector,
                                                monkeypatch, capsys):
    real_iter = VideoFileSource.__iter__

    def interrupted(self):
        for i, frame in enumerate(real_iter(self)):
            if i == 12:
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(VideoFileSource, "__iter__", interrupted)
    out, js = tmp_path / "out.avi", tmp_path / "out.jsonl"
    rc = main(["--model", str(plumbing_model), "--source", str(blob_video), "--output", str(out),
               "--json", str(js), "--headless"])
    assert rc == cli_run.EXIT_INTERRUPTED == 130
    assert len(js.read_text().splitlines()) == 12 and count_video_frames(out) == 12
    assert _leftovers(tmp_path) == []
    assert "interrupted" in capsys.readouterr().err


def test_error_mid_run_leaves_no_output(tmp_path, plumbing_model, blob_video, blob_detector, monkeypatch):
    real = aligner_mod.FaceAligner.process_video
    calls = [0]

    def failing(self, frame, t):
        calls[0] += 1
        if calls[0] == 5:
            raise RuntimeError("boom")
        return real(self, frame, t)

    monkeypatch.setattr(aligner_mod.FaceAligner, "process_video", failing)
    with pytest.raises(RuntimeError, match="boom"):
        main(["--model", str(plumbing_model), "--source", str(blob_video), "--output", str(tmp_path / "o.mp4"),
              "--json", str(tmp_path / "o.jsonl"), "--headless"])
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["missing_source", "corrupt_video", "camera", "missing_model", "bad_plan",
                                  "plan_wrong_sidecar", "no_default_model", "bad_output_suffix", "bad_detector"])
def test_bad_inputs_give_clear_messages_and_exit_codes(case, tmp_path, plumbing_model, blob_video, capsys,
                                                       monkeypatch):
    out, js = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    outs = ["--output", str(out), "--json", str(js), "--headless"]
    model = ["--model", str(plumbing_model)]
    if case == "missing_source":
        args, code, msg = model + ["--source", str(tmp_path / "nope.mp4")], 3, "video file not found"
    elif case == "corrupt_video":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(500))
        args, code, msg = model + ["--source", str(bad)], 3, "cannot open this video"
    elif case == "camera":
        args, code, msg = model + ["--camera", "97"], 3, "camera 97: cannot open"
    elif case == "missing_model":
        args, code, msg = ["--model", str(tmp_path / "m.onnx"), "--source", str(blob_video)], 4, "model file not found"
    elif case == "bad_plan":
        plan = tmp_path / "model.plan"
        plan.write_bytes(b"x")
        args, code, msg = ["--engine", str(plan), "--source", str(blob_video)], 4, "sidecar"
    elif case == "plan_wrong_sidecar":
        plan = tmp_path / "model.plan"
        plan.write_bytes(b"x")
        write_metadata(str(plan) + ".json", plumbing_metadata(64, fmt="onnx"))
        args, code, msg = ["--engine", str(plan), "--source", str(blob_video)], 4, "expected 'tensorrt'"
    elif case == "no_default_model":
        import fa3d.runtime.default_model as dm

        monkeypatch.setattr(dm, "asset_path", lambda rel: tmp_path / "absent" / rel)
        args, code, msg = ["--source", str(blob_video)], 4, "the shipped default model is missing"
    elif case == "bad_output_suffix":
        args, code, msg = model + ["--source", str(blob_video), "--output", str(tmp_path / "o.gif")], 2, "--output"
        outs = []
    else:
        args, code, msg = model + ["--source", str(blob_video), "--detector", "mtcnn"], 2, "unknown detector"
    assert main(args + outs) == code
    assert msg in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o"))) == []


def test_folder_with_corrupt_frame(tmp_path, plumbing_model, blob_detector, capsys):
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"{i:03d}.png"), blob_frame(centre=(300 + 5 * i, 240)))
    (d / "002.png").write_bytes(b"garbage")
    js = tmp_path / "f.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(d), "--json", str(js), "--headless"]) == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1, 3, 4]
    assert all(r["faces"] and r["faces"][0]["track_id"] is None for r in recs)
    assert "decode failures 1" in capsys.readouterr().out


def test_help_and_usage(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: None" not in text and "(default: False)" not in text
    assert "(default: the model shipped inside fa3d)" in text and "every N frames (default: 10)" in text
    assert text.count("bundled sample clip") == 1  # the source's default, said once
    assert main(["--bogus"]) == 2
    assert main(["--intrinsics", "a.json", "--fov", "60"]) == 2


def test_video_with_corrupt_frame_is_counted_and_skipped(tmp_path, plumbing_model, blob_detector, capsys):
    video = write_blob_video(tmp_path / "c.avi", n_frames=10)
    corrupt_avi_frame(video, 4)
    js = tmp_path / "c.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(video), "--json", str(js), "--headless"]) == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert all(len(r["faces"]) == 1 and r["faces"][0]["track_id"] == 0 for r in recs)
    assert "decode failures 1" in capsys.readouterr().out


@pytest.mark.gpu
def test_fa_run_with_a_real_engine(tmp_path, plumbing_model, blob_video, blob_detector):
    """fa-run --engine on a GPU: an engine built from the plumbing ONNX by fa-export's builder."""
    from fa3d.export.trt_build import BuildOptions, build_engine

    engine = tmp_path / "plumbing.plan"
    build_engine(plumbing_model, engine, BuildOptions())
    js = tmp_path / "e.jsonl"
    assert main(["--engine", str(engine), "--source", str(blob_video), "--json", str(js), "--headless"]) == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(recs) == 30 and all(len(r["faces"]) == 1 for r in recs)


def _records(js):
    return [json.loads(line) for line in js.read_text().splitlines()]


def test_images_one_record_each_with_file_and_size_and_image_outputs(tmp_path, plumbing_model, blob_detector):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), blob_frame(size=(640, 480), centre=(300, 240)))
    cv2.imwrite(str(d / "b.jpg"), blob_frame(size=(320, 400), centre=(160, 200)))
    js, out = tmp_path / "f.jsonl", tmp_path / "annotated"
    assert main(["--model", str(plumbing_model), "--source", str(d), "--json", str(js), "--output", str(out),
                 "--headless"]) == 0
    recs = _records(js)
    assert [(r["file"], r["width"], r["height"]) for r in recs] == [("a.png", 640, 480), ("b.jpg", 320, 400)]
    assert all(r["schema_version"] == 2 and len(r["faces"]) == 1 for r in recs)
    # annotations keep the image's whole name (face.jpg and face.png never collide): a.png.png, b.jpg.png
    assert [cv2.imread(str(out / n)).shape for n in ("a.png.png", "b.jpg.png")] == [(480, 640, 3), (400, 320, 3)]
    # one image -> one annotated .png
    png, js1 = tmp_path / "one.png", tmp_path / "one.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(d / "b.jpg"), "--output", str(png),
                 "--json", str(js1), "--headless"]) == 0
    assert cv2.imread(str(png)).shape == (400, 320, 3) and len(_records(js1)) == 1


def test_image_output_for_a_video_is_refused(tmp_path, plumbing_model, blob_video, capsys):
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--output",
                 str(tmp_path / "x.png"), "--headless"]) == 2
    assert "single image source" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_video_of_images_of_other_sizes_is_letterboxed_not_stretched(tmp_path, plumbing_model, blob_detector):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "0.png"), blob_frame(size=(640, 480), centre=(300, 240)))
    tall = np.full((480, 240, 3), 200, np.uint8)
    cv2.imwrite(str(d / "1.png"), tall)
    out = tmp_path / "o.avi"
    assert main(["--model", str(plumbing_model), "--source", str(d), "--output", str(out), "--headless"]) == 0
    cap = cv2.VideoCapture(str(out))
    cap.read()
    ok, second = cap.read()
    assert ok and second.shape == (480, 640, 3)
    assert second[:, :150].max() < 30 and second[:, 250:390].mean() > 150, "padded at the sides, not stretched"


def test_json_lines_are_on_disk_as_frames_are_processed(tmp_path, plumbing_model, blob_video, blob_detector,
                                                        monkeypatch):
    js = tmp_path / "live.jsonl"
    seen = []
    real_iter = VideoFileSource.__iter__

    def watching(self):
        for frame in real_iter(self):
            text = js.read_text() if js.exists() else ""
            seen.append((frame.index, text.count("\n"), text.endswith("\n") or text == ""))
            yield frame

    monkeypatch.setattr(VideoFileSource, "__iter__", watching)
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(js), "--headless",
                 "--max-frames", "6"]) == 0
    assert [(i, n) for i, n, _ in seen] == [(i, i) for i in range(6)], "frame k sees the k earlier records"
    assert all(whole for *_, whole in seen)


def test_json_lines_writer_never_leaves_half_a_line(tmp_path, monkeypatch):
    import os

    from fa3d.runtime import outputs

    w = outputs.JsonLinesWriter(tmp_path / "x.jsonl")
    w.write({"a": 1})
    real = os.write

    def short_then_fail(fd, data):
        if len(data) > 5:
            return real(fd, data[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        w.write({"b": "a longer record"})
    monkeypatch.setattr(outputs.os, "write", real)
    w.close()
    assert (tmp_path / "x.jsonl").read_text() == '{"a":1}\n'


def test_camera_device_paths_and_pipelines_are_accepted(tmp_path, plumbing_model, capsys):
    assert main(["--model", str(plumbing_model), "--camera", "/dev/video97", "--headless"]) == 3
    assert "camera /dev/video97: cannot open" in capsys.readouterr().err
    from fa3d.runtime.sources import open_source

    with pytest.raises(Exception, match="GStreamer pipeline"):
        open_source("videotestsrc num-buffers=1 ! fakesinkx")
