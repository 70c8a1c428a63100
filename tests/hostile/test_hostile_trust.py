"""Files trusted too far (issue 24): a sidecar with a number out of range, nested 200,000 deep, larger than
any sidecar, or with a NaN in its normalisation; an INT8 file changed after it was gated; a real video whose
name holds `` ! ``; camera intrinsics OpenCV refuses. Each is refused at load with one line and its exit code
(or is what it is: a file), never a traceback, a wrong result or a configuration error counted as bad frames."""

from __future__ import annotations

import json
import shutil
import sys
import time

import cv2
import numpy as np
import pytest

from hostile_helpers import one_line_error
from fa3d.runtime import FaceAligner
from fa3d.runtime.cli_run import main
from fa3d.runtime.metadata import MetadataError, read_sidecar, sidecar_path
from rt_helpers import blob_frame


def _model_with_sidecar(tmp_path, plumbing_model, edit) -> tuple:
    """A copy of the plumbing model whose sidecar text is ``edit(text)``."""
    model = tmp_path / "m.onnx"
    shutil.copy(plumbing_model, model)
    text = sidecar_path(plumbing_model).read_text()
    sidecar_path(model).write_text(edit(text))
    return model


def _set(key_path, value_text):
    """An edit that replaces the JSON value at ``key_path`` with the raw text ``value_text``."""
    def edit(text):
        d = json.loads(text)
        node = d
        for k in key_path[:-1]:
            node = node[k]
        node[key_path[-1]] = "@@VALUE@@"
        return json.dumps(d).replace('"@@VALUE@@"', value_text)
    return edit


@pytest.mark.parametrize("edit,needle", [
    (_set(["num_dense"], "1e999"), "out of range"),
    (_set(["num_dense"], "2.5"), "num_dense must be an integer"),
    (_set(["num_dense"], "10000000"), "num_dense must be an integer in [0, 100000]"),
    (_set(["input", "preprocess", "mean"], "[127.5, NaN, 127.5]"), "NaN"),
    (_set(["input", "preprocess", "std"], "[128, 1e999, 128]"), "out of range"),
    (_set(["input", "preprocess", "mean"], "[127.5, -1e9, 127.5]"), "mean must hold three finite numbers in [0, 255]"),
    (_set(["input", "preprocess", "input_size"], "1e999"), "out of range"),
    (_set(["input", "preprocess", "input_size"], "100000"), "input_size must be an integer in [8, 4096]"),
    (_set(["input", "preprocess", "crop_scale"], "Infinity"), "Infinity"),
    (_set(["model"], "[" * 200_000 + "]" * 200_000), "nest 200001 deep"),
    (_set(["model"], json.dumps({"pad": "x" * (2 << 20)})), "larger than"),
])
def test_a_hostile_sidecar_is_one_metadata_error(tmp_path, plumbing_model, edit, needle):
    model = _model_with_sidecar(tmp_path, plumbing_model, edit)
    t0 = time.perf_counter()
    with pytest.raises(MetadataError) as e:
        read_sidecar(model)
    assert time.perf_counter() - t0 < 2.0
    assert needle in str(e.value)


def test_fa_run_with_a_nan_in_the_mean_exits_4_before_any_frame(tmp_path, plumbing_model, blob_video, capsys):
    model = _model_with_sidecar(tmp_path, plumbing_model, _set(["input", "preprocess", "mean"], "[NaN, 1, 2]"))
    assert main(["--model", str(model), "--source", str(blob_video), "--headless"]) == 4
    assert "NaN" in one_line_error(capsys.readouterr().err, "fa-run")


@pytest.mark.parametrize("value", ["1e999", "[" * 200_000 + "]" * 200_000])
def test_fa_run_with_an_overflowing_or_deep_sidecar_exits_4(tmp_path, plumbing_model, blob_video, capsys, value):
    model = _model_with_sidecar(tmp_path, plumbing_model, _set(["num_dense"], value))
    assert main(["--model", str(model), "--source", str(blob_video), "--headless"]) == 4
    one_line_error(capsys.readouterr().err, "fa-run")


def test_a_real_file_whose_name_holds_a_bang_is_a_file_not_a_pipeline(tmp_path, plumbing_model, blob_video,
                                                                      blob_detector, capsys):
    clip = tmp_path / "clip ! take 2.avi"
    shutil.copy(blob_video, clip)
    js = tmp_path / "o.jsonl"
    assert main(["--model", str(plumbing_model), "--source", str(clip), "--json", str(js), "--headless"]) == 0
    assert len(js.read_text().splitlines()) == 30
    from fa3d.runtime.sources import VideoFileSource, open_source

    with open_source(str(clip)) as src:
        assert isinstance(src, VideoFileSource)


@pytest.mark.parametrize("dist,needle", [([0.1, 0.01, 0.0], "distortion coefficients"),
                                         ([0.1, float("nan"), 0, 0], "NaN"), ([0.1] * 6, "got 6")])
def test_intrinsics_opencv_refuses_are_exit_2_at_start_not_skipped_frames(tmp_path, plumbing_model, blob_detector,
                                                                        capsys, dist, needle):
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "face.png"), blob_frame())
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps({"fx": 600, "fy": 600, "cx": 320, "cy": 240, "dist": dist}))
    js = tmp_path / "o.jsonl"
    rc = main(["--model", str(plumbing_model), "--source", str(d), "--intrinsics", str(cam), "--json", str(js),
               "--headless"])
    out = capsys.readouterr()
    assert rc == 2, out.out
    line = one_line_error(out.err, "fa-run")
    assert needle in line
    assert not js.exists(), "nothing ran"


def test_intrinsics_are_checked_when_made():
    from fa3d.runtime.camera import CameraIntrinsics

    with pytest.raises(ValueError, match="distortion coefficients"):
        CameraIntrinsics(600, 600, 320, 240, dist=(0.1, 0.0, 0.0))
    with pytest.raises(ValueError, match="cx must be a finite number"):
        CameraIntrinsics(600, 600, float("inf"), 240)
    assert CameraIntrinsics(600, 600, 320, 240, dist=(0.1, 0.0, 0.0, 0.0, 0.01)).dist[0] == 0.1


# --------------------------------------------------------------------------- INT8 file changed after gating
@pytest.fixture
def tampered_int8(tmp_path):
    """The shipped FP32 ONNX and INT8 file, the INT8 with one weight changed after it was gated (the sidecar,
    with its int8_sha256, is the shipped one)."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from fa3d.export import int8_step

    fp32, int8 = int8_step.shipped_files()
    if not int8.is_file():
        pytest.skip("no shipped model.int8.onnx in this checkout")
    d = tmp_path / "d"
    d.mkdir()
    shutil.copyfile(fp32, d / "model.onnx")
    shutil.copyfile(sidecar_path(fp32), sidecar_path(d / "model.onnx"))
    m = onnx.load(str(int8))
    w = m.graph.initializer[0]
    a = numpy_helper.to_array(w).copy()
    a.flat[0] += 0.5
    w.CopyFrom(numpy_helper.from_array(a, w.name))
    onnx.save(m, str(d / "model.int8.onnx"))
    shutil.copyfile(sidecar_path(int8), sidecar_path(d / "model.int8.onnx"))
    return d


def test_fa_export_int8_never_reuses_an_int8_file_changed_after_gating(tampered_int8, monkeypatch, capsys):
    from fa3d.export.cli import main as export_main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    rc = export_main(["--from-onnx", str(tampered_int8 / "model.onnx"), "--int8", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 4, out.out
    assert "changed since it was made, linted and gated" in out.err
    assert "reusing" not in out.out


def test_the_unchanged_shipped_int8_file_is_still_reused(tampered_int8, monkeypatch, capsys):
    """The same run on the untouched file: the hash check refuses only a changed file."""
    from fa3d.export import int8_step
    from fa3d.export.cli import main as export_main

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    shutil.copyfile(int8_step.shipped_files()[1], tampered_int8 / "model.int8.onnx")
    assert export_main(["--from-onnx", str(tampered_int8 / "model.onnx"), "--int8", "--no-progress"]) == 3
    assert "reusing" in capsys.readouterr().out


def test_read_json_limits_hold_for_intrinsics_too(tmp_path):
    from fa3d.runtime.camera import CameraIntrinsics

    cam = tmp_path / "cam.json"
    cam.write_text('{"fx": 600, "fy": 600, "cx": 320, "cy": 240, "dist": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match="deep"):
        CameraIntrinsics.load(cam)
    cam.write_text('{"fx": 1e999, "fy": 600, "cx": 320, "cy": 240}')
    with pytest.raises(ValueError, match="out of range"):
        CameraIntrinsics.load(cam)


def test_the_plumbing_model_still_loads(plumbing_model):
    with FaceAligner.from_artifact(plumbing_model) as al:
        assert len(al.process(blob_frame(), boxes=[[260, 160, 380, 320]])) == 1
    assert np.isfinite(read_sidecar(plumbing_model).preprocess.mean).all()
