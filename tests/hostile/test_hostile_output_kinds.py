"""Outputs that must never destroy or lie (issue 24): a device or FIFO is written in place and never removed or
replaced (``/dev/full`` says "disk full"); every output is checked before any work: a folder where a file is
wanted, the model's own sidecar, annotated images that would collide with each other or overwrite a source.

The device nodes are made in the test's own folder (``mknod``, as root, the way robots run): a regression
destroys a copy, never the machine's ``/dev/null``. Without root the FIFO cases still run."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import threading

import cv2
import numpy as np
import pytest

from hostile_helpers import no_partials, one_line_error
from fa3d.runtime.cli_run import main
from fa3d.runtime.metadata import sidecar_path
from rt_helpers import blob_frame

NULL, FULL = 3, 7  # the minor numbers of /dev/null and /dev/full (major 1)


def _device(tmp_path, minor: int, name: str):
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    p = tmp_path / name
    os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    try:
        with open(p, "wb"):
            pass
    except OSError:
        pytest.skip("device nodes cannot be opened in this folder (nodev mount)")
    return p


def _is_device(p) -> bool:
    return os.path.lexists(p) and stat.S_ISCHR(os.lstat(p).st_mode)


@pytest.fixture
def null_dev(tmp_path):
    return _device(tmp_path, NULL, "null")


@pytest.fixture
def full_dev(tmp_path):
    return _device(tmp_path, FULL, "full")


def _fifo_reader(path):
    """A FIFO at ``path`` and a thread that reads it to the end; returns (thread, chunks)."""
    os.mkfifo(path)
    chunks: list[bytes] = []

    def read():
        with open(path, "rb") as f:
            chunks.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t, chunks


# ------------------------------------------------------------------------------------------ devices and FIFOs
def test_fa_run_json_to_a_full_device_says_disk_full_and_keeps_the_device(tmp_path, plumbing_model, blob_video,
                                                                           blob_detector, full_dev, capsys):
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(full_dev),
                 "--headless"]) == 5
    line = one_line_error(capsys.readouterr().err, "fa-run")
    assert "disk full" in line and "Invalid argument" not in line
    assert _is_device(full_dev), "the clean-up removed the device node"


@pytest.fixture
def failing_drawing(monkeypatch):
    """Every frame's drawing fails with an I/O error: a run that fails (exit 5) after its outputs were opened."""
    import fa3d.runtime.draw as draw

    def broken(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(draw, "draw_results", broken)


def test_fa_run_that_fails_keeps_a_null_device_given_as_json(tmp_path, plumbing_model, blob_video, blob_detector,
                                                             null_dev, failing_drawing, capsys):
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(null_dev),
                 "--output", str(tmp_path / "o.avi"), "--headless"]) == 5
    one_line_error(capsys.readouterr().err, "fa-run")
    assert _is_device(null_dev), "the clean-up removed the device node"
    assert no_partials(tmp_path) == [] and not (tmp_path / "o.avi").exists()


def test_fa_run_that_fails_keeps_a_fifo_given_as_json(tmp_path, plumbing_model, blob_video, blob_detector,
                                                      failing_drawing, capsys):
    fifo = tmp_path / "pipe"
    reader, chunks = _fifo_reader(fifo)
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(fifo),
                 "--output", str(tmp_path / "o.avi"), "--headless"]) == 5
    reader.join(10)
    assert not reader.is_alive()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was removed"


def test_fa_run_json_to_a_fifo_streams_every_record(tmp_path, plumbing_model, blob_video, blob_detector):
    fifo = tmp_path / "pipe"
    reader, chunks = _fifo_reader(fifo)
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--json", str(fifo),
                 "--headless"]) == 0
    reader.join(10)
    assert len(chunks[0].decode().splitlines()) == 30 and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_fa_bench_json_to_a_device_is_written_in_place(plumbing_model, null_dev, full_dev, capsys):
    from fa3d.runtime.bench import main as bench_main

    argv = ["--model", str(plumbing_model), "--no-pipeline", "--batch", "1", "--warmup", "0", "--iters", "1"]
    assert bench_main([*argv, "--json", str(null_dev)]) == 0
    assert _is_device(null_dev), "the atomic write replaced the device with a regular file"
    capsys.readouterr()
    assert bench_main([*argv, "--json", str(full_dev)]) == 5
    assert "disk full" in one_line_error(capsys.readouterr().err, "fa-bench")
    assert _is_device(full_dev)


def test_fa_eval_json_to_a_device_is_written_in_place(tmp_path, null_dev, capsys):
    pytest.importorskip("torch")
    from fa3d.training.cli_eval import main as eval_main

    data = tmp_path / "aflw"
    (data / "images").mkdir(parents=True)
    names = np.array(["c0.jpg"])
    cv2.imwrite(str(data / "images" / "c0.jpg"), np.zeros((120, 120, 3), np.uint8))
    pts = np.random.default_rng(0).uniform(30, 90, (1, 21, 2)).astype(np.float32)
    np.savez(data / "labels.npz", names=names, pts21_crop=pts, visible=np.ones((1, 21), bool),
             yaw_deg=np.array([10.0], np.float32), roi_box=np.zeros((1, 4), np.float32), pts21_orig=pts,
             split=np.array(["val"]))
    pred = tmp_path / "pred.npz"
    np.savez(pred, names=names, landmarks=np.zeros((1, 68, 3)), pose=np.zeros((1, 3)))
    assert eval_main(["--predictions", str(pred), "--dataset", "aflw19k-val", "--data", str(data),
                      "--json", str(null_dev)]) == 0
    assert _is_device(null_dev)


def test_atomic_writes_leave_devices_and_fifos_in_place(tmp_path, null_dev, full_dev):
    """The writers of fa-eval, fa-calib, fa-latency, fa-export: in place on a device, never a new file."""
    from fa3d.runtime.atomic import atomic_open, atomic_write_text

    atomic_write_text(null_dev, "{}\n")
    with atomic_open(null_dev) as f:
        np.savez(f, a=np.zeros(3))  # a file object: np.savez appends no .npz to the name
    assert _is_device(null_dev) and sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]
    with pytest.raises(OSError) as e:
        atomic_write_text(full_dev, "x" * 100_000)
    assert e.value.errno == errno.ENOSPC and _is_device(full_dev)


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path):
    from fa3d.runtime.atomic import atomic_write_text

    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and target.read_text() == "new"


# ------------------------------------------------------------------------------- checked before any work
def test_two_images_with_the_same_stem_give_two_annotations(tmp_path, plumbing_model, blob_detector):
    src, out = tmp_path / "imgs", tmp_path / "out"
    src.mkdir()
    cv2.imwrite(str(src / "face.jpg"), blob_frame(size=(640, 480)))
    cv2.imwrite(str(src / "face.png"), blob_frame(size=(320, 400), centre=(160, 200)))
    assert main(["--model", str(plumbing_model), "--source", str(src), "--output", str(out), "--headless"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["face.jpg.png", "face.png.png"]
    assert cv2.imread(str(out / "face.jpg.png")).shape == (480, 640, 3)
    assert cv2.imread(str(out / "face.png.png")).shape == (400, 320, 3)


def test_an_output_folder_that_is_the_source_folder_is_refused(tmp_path, plumbing_model, blob_detector, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "photo.png"), blob_frame())
    before = (src / "photo.png").read_bytes()
    assert main(["--model", str(plumbing_model), "--source", str(src), "--output", str(src), "--headless"]) == 2
    assert "source folder" in one_line_error(capsys.readouterr().err, "fa-run")
    assert (src / "photo.png").read_bytes() == before and os.listdir(src) == ["photo.png"]


def test_an_output_folder_holding_the_source_image_never_overwrites_it(tmp_path, plumbing_model, blob_detector):
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "photo.png"), blob_frame())
    before = (src / "photo.png").read_bytes()
    assert main(["--model", str(plumbing_model), "--source", str(src / "photo.png"), "--output", str(src),
                 "--headless"]) == 0
    assert (src / "photo.png").read_bytes() == before, "the source was overwritten by its annotation"
    assert (src / "photo.png.png").is_file()


def test_an_annotation_that_would_overwrite_another_source_is_refused(tmp_path, plumbing_model, blob_detector,
                                                                     capsys):
    """out/a.png.png is a symlink to the source b.png: writing a's annotation there (through the link) would
    overwrite b.png; found before any work."""
    src, out = tmp_path / "imgs", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    cv2.imwrite(str(src / "a.png"), blob_frame())
    cv2.imwrite(str(src / "b.png"), blob_frame(centre=(300, 200)))
    (out / "a.png.png").symlink_to(src / "b.png")
    before = (src / "b.png").read_bytes()
    assert main(["--model", str(plumbing_model), "--source", str(src), "--output", str(out), "--headless"]) == 2
    assert "would overwrite the input" in one_line_error(capsys.readouterr().err, "fa-run")
    assert (src / "b.png").read_bytes() == before


@pytest.mark.parametrize("prog", ["fa-run", "fa-bench"])
def test_json_naming_the_models_own_sidecar_is_refused(tmp_path, plumbing_model, blob_video, capsys, prog):
    from fa3d.runtime.bench import main as bench_main

    model = tmp_path / "m.onnx"
    shutil.copy(plumbing_model, model)
    shutil.copy(sidecar_path(plumbing_model), sidecar_path(model))
    before = sidecar_path(model).read_bytes()
    if prog == "fa-run":
        rc = main(["--model", str(model), "--source", str(blob_video), "--json", str(sidecar_path(model)),
                   "--headless"])
    else:
        rc = bench_main(["--model", str(model), "--no-pipeline", "--iters", "1", "--json", str(sidecar_path(model))])
    assert rc == 2
    assert "input" in one_line_error(capsys.readouterr().err, prog)
    assert sidecar_path(model).read_bytes() == before


def test_a_video_output_that_is_an_existing_folder_is_refused_before_any_work(tmp_path, plumbing_model, blob_video,
                                                                               monkeypatch, capsys):
    import fa3d.runtime.aligner as aligner_mod

    monkeypatch.setattr(aligner_mod.FaceAligner, "from_artifact",
                        classmethod(lambda cls, *a, **k: pytest.fail("the model was loaded: work began")))
    (tmp_path / "out.mp4").mkdir()
    assert main(["--model", str(plumbing_model), "--source", str(blob_video), "--output", str(tmp_path / "out.mp4"),
                 "--headless"]) == 2
    out = capsys.readouterr()
    assert "existing folder" in one_line_error(out.err, "fa-run") and out.out == ""
    assert no_partials(tmp_path) == [] and os.listdir(tmp_path / "out.mp4") == []


def test_fa_calib_out_that_is_a_folder_is_refused_before_any_work(tmp_path, plumbing_model, monkeypatch, capsys):
    import fa3d.runtime.detect as detect_mod
    from fa3d.calibration.cli import main as calib_main

    monkeypatch.setattr(detect_mod, "make_detector", lambda spec: pytest.fail("the detector was made: work began"))
    src = tmp_path / "imgs"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), blob_frame())
    (tmp_path / "set.npz").mkdir()
    assert calib_main([str(src), "--model", str(plumbing_model), "--out", str(tmp_path / "set.npz"),
                       "--no-progress"]) == 2
    assert "existing folder" in one_line_error(capsys.readouterr().err, "fa-calib")


def test_outputs_clash_with_the_files_an_output_folder_will_write(tmp_path):
    from fa3d.runtime.output_check import Output, output_clash

    out = tmp_path / "out"
    folder = Output(out, "folder", (out / "a.png.png",))
    assert "same file" in output_clash({"--output": folder, "--json": out / "a.png.png"}, [])
    assert "same file" in output_clash({"--output": folder, "--json": out}, [])
    assert output_clash({"--output": folder, "--json": out / "run.jsonl"}, []) is None
    assert output_clash({"--json": "/dev/null", "--plot": "/dev/null"}, []) is None  # a device is shared freely
