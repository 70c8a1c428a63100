"""Hostile outputs: an output that names an input (directly, through a symlink, a relative path or a hard
link) is refused before anything runs and the input is untouched; unwritable or clashing output folders."""

from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

from hostile_helpers import one_line_error
from fa3d.runtime.cli_errors import output_clash
from fa3d.runtime.cli_run import main
from tests.helpers.plumbing import blob_frame


@pytest.fixture
def clip(tmp_path, blob_video):
    p = tmp_path / "clip.avi"
    shutil.copy(blob_video, p)
    return p


def _refused(capsys, argv, protected):
    before = {p: p.read_bytes() for p in protected}
    assert main(argv) == 2
    line = one_line_error(capsys.readouterr().err, "fa-run")
    assert all(p.read_bytes() == b for p, b in before.items()), "an input was modified"
    return line


def test_output_equal_to_the_source_video_is_refused(clip, plumbing_model, capsys):
    line = _refused(capsys, ["--model", str(plumbing_model), "--source", str(clip), "--output", str(clip),
                             "--headless"], [clip])
    assert "--output" in line and "input" in line


def test_json_equal_to_the_source_photo_is_refused(tmp_path, plumbing_model, capsys):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), blob_frame())
    _refused(capsys, ["--model", str(plumbing_model), "--source", str(photo), "--json", str(photo), "--headless"],
             [photo])


def test_through_a_symlink_a_relative_path_and_a_hard_link(tmp_path, clip, plumbing_model, capsys, monkeypatch):
    link = tmp_path / "link.avi"
    link.symlink_to(clip)
    _refused(capsys, ["--model", str(plumbing_model), "--source", str(clip), "--output", str(link), "--headless"],
             [clip])
    monkeypatch.chdir(tmp_path)
    _refused(capsys, ["--model", str(plumbing_model), "--source", str(clip), "--output", "./sub/../clip.avi",
                      "--headless"], [clip])
    hard = tmp_path / "hard.avi"
    os.link(clip, hard)
    _refused(capsys, ["--model", str(plumbing_model), "--source", str(hard), "--output", str(clip), "--headless"],
             [clip])


def test_json_over_the_model_or_both_outputs_on_one_file(tmp_path, clip, plumbing_model, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(plumbing_model, model)
    shutil.copy(str(plumbing_model) + ".json", str(model) + ".json")
    _refused(capsys, ["--model", str(model), "--source", str(clip), "--json", str(model), "--headless"], [model])
    _refused(capsys, ["--model", str(model), "--source", str(clip), "--json", str(tmp_path / "o.mp4"),
                      "--output", str(tmp_path / "o.mp4"), "--headless"], [clip])


def test_an_output_under_a_file_gives_exit_5_and_leaves_nothing(tmp_path, clip, plumbing_model, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--model", str(plumbing_model), "--source", str(clip), "--json", str(blocker / "o.jsonl"),
                 "--headless"]) == 5
    one_line_error(capsys.readouterr().err, "fa-run")
    assert blocker.read_text() == "x"


def test_output_clash_ignores_cameras_urls_and_missing_outputs(tmp_path):
    assert output_clash({"--output": tmp_path / "a.mp4", "--json": None}, [0, "rtsp://x/y", None]) is None
    assert output_clash({"--output": tmp_path / "a.mp4"}, [tmp_path / "b.mp4"]) is None


def test_fa_export_out_onto_a_file_or_under_one(tmp_path, capsys):
    from fa3d.export.cli import main as export_main

    f = tmp_path / "existing.bin"
    f.write_bytes(b"keep")
    assert export_main(["--out", str(f), "--onnx-only"]) == 2
    assert "is a file" in one_line_error(capsys.readouterr().err, "fa-export")
    assert export_main(["--out", str(f / "sub"), "--onnx-only"]) == 2
    assert "cannot write there" in one_line_error(capsys.readouterr().err, "fa-export")
    assert export_main(["--triton", str(f), "--onnx-only", "--out", str(tmp_path / "o")]) == 2
    assert "--triton" in one_line_error(capsys.readouterr().err, "fa-export")
    assert f.read_bytes() == b"keep"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_fa_export_out_in_a_read_only_folder(tmp_path, capsys):
    from fa3d.export.cli import main as export_main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert export_main(["--out", str(ro / "x"), "--onnx-only"]) == 2
        assert "cannot write there" in one_line_error(capsys.readouterr().err, "fa-export")
    finally:
        ro.chmod(0o755)


def test_fa_export_out_refused_when_read_only_as_the_os_reports_it(tmp_path, capsys, monkeypatch):
    """The same path for root (which may write anywhere): the probe file's OSError is what is reported."""
    import errno
    import tempfile

    from fa3d.export.cli import main as export_main

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    assert export_main(["--out", str(tmp_path / "x"), "--onnx-only"]) == 2
    assert "Read-only file system" in one_line_error(capsys.readouterr().err, "fa-export")


def test_fa_calib_bench_eval_latency_refuse_outputs_over_inputs(tmp_path, plumbing_model, capsys):
    from fa3d.calibration.cli import main as calib_main
    from fa3d.runtime.bench import main as bench_main

    model_bytes = plumbing_model.read_bytes()
    assert calib_main([str(tmp_path), "--model", str(plumbing_model), "--out", str(plumbing_model)]) == 2
    one_line_error(capsys.readouterr().err, "fa-calib")
    assert bench_main(["--model", str(plumbing_model), "--json", str(plumbing_model), "--no-pipeline"]) == 2
    one_line_error(capsys.readouterr().err, "fa-bench")
    assert plumbing_model.read_bytes() == model_bytes
    pytest.importorskip("torch")
    from fa3d.export.latency import main as latency_main
    from fa3d.training.cli_eval import main as eval_main

    pred = tmp_path / "pred.npz"
    np.savez(pred, names=np.array(["a"]), landmarks=np.zeros((1, 68, 3)), pose=np.zeros((1, 3)))
    pred_bytes = pred.read_bytes()
    assert eval_main(["--predictions", str(pred), "--dataset", "aflw", "--data", str(tmp_path),
                      "--json", str(pred)]) == 2
    one_line_error(capsys.readouterr().err, "fa-eval")
    assert latency_main(["--onnx", str(plumbing_model), "--json", str(plumbing_model)]) == 2
    one_line_error(capsys.readouterr().err, "fa-latency")
    assert pred.read_bytes() == pred_bytes and plumbing_model.read_bytes() == model_bytes


def test_fa_run_without_source_never_overwrites_the_bundled_sample_clip(capsys):
    from fa3d.runtime.default_model import sample_clip_path

    clip = sample_clip_path()
    size = clip.stat().st_size
    assert main(["--output", str(clip), "--headless"]) == 2
    assert "input" in one_line_error(capsys.readouterr().err, "fa-run")
    assert clip.stat().st_size == size


@pytest.mark.parametrize("inside", ["", "labels"])
def test_fa_label_refuses_an_output_folder_that_is_or_lies_in_its_source(tmp_path, capsys, inside):
    """Checked before the teacher is needed: no MediaPipe required to be told."""
    from fa3d.training.cli_label import main as label_main
    src = tmp_path / "faces"
    src.mkdir()
    (src / "labels.npz").write_bytes(b"the user's own labels")
    out = src / inside if inside else src
    assert label_main([str(src), str(out), "--quiet"]) == 2
    assert "inside it" in one_line_error(capsys.readouterr().err, "fa-label")
    assert (src / "labels.npz").read_bytes() == b"the user's own labels"
