"""fa-export --int8 on the shipped default model (its Q/DQ file is verified, not remade), the calibration
requirement for other models, --from-onnx --int8, unreadable or mismatched ONNX files, and installs
without torch. TensorRT is absent here (sys.modules['tensorrt'] = None): exit 3 with the target commands."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from fa3d.export import int8_step
from fa3d.export.cli import main
from fa3d.runtime.metadata import read_sidecar, sha256_file, sidecar_path

SHIPPED_FP32, SHIPPED_INT8 = int8_step.shipped_files()
needs_shipped = pytest.mark.skipif(not SHIPPED_INT8.is_file(), reason="no shipped model.int8.onnx in this checkout")


@pytest.fixture(autouse=True)
def _no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _no_torch(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))


def _copy_model(src: Path, dst_dir: Path, name: str = "model.onnx") -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst_dir / name)
    shutil.copyfile(sidecar_path(src), sidecar_path(dst_dir / name))
    return dst_dir / name


@needs_shipped
def test_int8_default_uses_the_shipped_file_without_torch(tmp_path, monkeypatch, capsys):
    _no_torch(monkeypatch)  # the shipped files need no torch
    out = tmp_path / "export"
    t0 = time.perf_counter()
    rc = main(["--int8", "--out", str(out), "--no-progress"])
    seconds = time.perf_counter() - t0
    text = capsys.readouterr()
    assert rc == 3, text.err
    assert seconds < 60
    assert sha256_file(out / "model.int8.onnx") == sha256_file(SHIPPED_INT8)
    assert read_sidecar(out / "model.int8.onnx").source_sha256 == sha256_file(out / "model.onnx")
    assert (out / "blazeface_short_range.onnx").is_file() and (out / "blazeface_short_range.onnx.json").is_file()
    assert "shipped INT8 Q/DQ ONNX, verified" in text.out and "INT8 gate PASSED" in text.out
    assert "Q/DQ lint passed" in text.out
    assert "NME loss" in text.out and "against labels" in text.out
    assert f"trtexec --onnx={out}/model.int8.onnx --int8 --fp16" in text.out
    block = read_sidecar(out / "model.int8.onnx").model["int8"]
    assert block["gate"]["passed"] and block["gate"]["reference"] == "labels"
    assert block["recipe"]["validation"]["count"] >= 500 and "aflw19k val" in block["recipe"]["validation"]["source"]


@needs_shipped
def test_int8_default_refuses_an_int8_file_of_another_model(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "assets"
    fp32 = _copy_model(SHIPPED_FP32, fake)
    _copy_model(SHIPPED_INT8, fake, "model.int8.onnx")
    with open(fp32, "ab") as f:
        f.write(b"\0")  # another FP32 model than the one the INT8 file was made from
    monkeypatch.setattr(int8_step, "shipped_files", lambda: (fp32, fake / "model.int8.onnx"))
    assert main(["--int8", "--out", str(tmp_path / "o"), "--no-progress"]) == 4
    assert "made from another FP32 model" in capsys.readouterr().err
    assert not (tmp_path / "o" / "model.int8.onnx").exists()


def test_checkpoint_without_torch_is_exit_7(tmp_path, monkeypatch, capsys):
    _no_torch(monkeypatch)
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    assert main([str(ckpt), "--int8", "--calib", str(tmp_path / "c.npz"), "--out", str(tmp_path / "o")]) == 7
    err = capsys.readouterr().err
    assert "needs PyTorch" in err and "fa3d[train]" in err and "Traceback" not in err


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_fp32_default_without_torch_copies_the_shipped_onnx(tmp_path, monkeypatch, capsys):
    _no_torch(monkeypatch)
    assert main(["--out", str(tmp_path / "o"), "--onnx-only"]) == 0
    assert sha256_file(tmp_path / "o" / "model.onnx") == sha256_file(SHIPPED_FP32)
    assert "PyTorch is not installed: copied the default model's shipped ONNX" in capsys.readouterr().out


@pytest.fixture()
def other_onnx(tmp_path) -> Path:
    """An FP32 ONNX that is not the shipped model (the shipped one with one metadata byte changed)."""
    import onnx

    m = onnx.load(str(SHIPPED_FP32))
    m.doc_string = "not the shipped model"
    d = tmp_path / "x"
    d.mkdir()
    onnx.save(m, str(d / "model.onnx"))
    shutil.copyfile(sidecar_path(SHIPPED_FP32), sidecar_path(d / "model.onnx"))
    return d / "model.onnx"


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_from_onnx_int8_needs_calibration_and_tells_no_lie(other_onnx, capsys):
    rc = main(["--from-onnx", str(other_onnx), "--int8", "--no-progress"])
    text = capsys.readouterr()
    assert rc == 2
    assert "--calib" in text.err and "not the shipped default model" in text.err
    assert "written and checked" not in text.out + text.err and "trtexec" not in text.out
    assert not (other_onnx.parent / "model.int8.onnx").exists()


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_from_onnx_int8_calibrates_beside_the_onnx(other_onnx, tmp_path, monkeypatch, capsys):
    """The CLI asks the calibration for model.int8.onnx and its report beside the given ONNX, with the given
    frames, and points the build commands at that file (the STAND-IN's own writing is not what is tested)."""
    import fa3d.calibration.int8 as int8

    calls = []

    def stand_in(fp32_onnx, out_onnx, **kw):  # STAND-IN for the calibration: records and writes a labelled copy
        calls.append({"out": Path(out_onnx), **kw})
        _copy_model(fp32_onnx, Path(out_onnx).parent, Path(out_onnx).name)
        meta = read_sidecar(out_onnx).with_(precision="int8", source_sha256=sha256_file(fp32_onnx))
        from fa3d.runtime.metadata import write_metadata
        write_metadata(sidecar_path(out_onnx), meta)
        Path(kw["report_path"]).write_text("{}")
        return int8.Int8Result(passed=True, path=Path(out_onnx), report={"passed": True, "written": True})

    monkeypatch.setattr(int8, "make_int8", stand_in)
    monkeypatch.setattr(int8, "make_int8_cli_summary", lambda r: "stand-in gate passed")
    calib = tmp_path / "frames.mp4"
    rc = main(["--from-onnx", str(other_onnx), "--int8", "--calib", str(calib), "--no-progress"])
    text = capsys.readouterr()
    assert rc == 3, text.err
    assert len(calls) == 1 and calls[0]["calib"] == calib and calls[0]["out"] == other_onnx.parent / "model.int8.onnx"
    assert calls[0]["report_path"] == other_onnx.parent / "int8_report.json" and calls[0]["force"] is False
    assert f"trtexec --onnx={other_onnx.parent}/model.int8.onnx" in text.out


@needs_shipped
def test_from_onnx_of_the_shipped_model_reuses_the_shipped_int8(tmp_path, capsys):
    src = _copy_model(SHIPPED_FP32, tmp_path / "d")
    assert main(["--from-onnx", str(src), "--int8", "--no-progress"]) == 3
    assert sha256_file(tmp_path / "d" / "model.int8.onnx") == sha256_file(SHIPPED_INT8)
    assert main(["--from-onnx", str(src), "--int8", "--no-progress"]) == 3  # then it is reused, verified
    assert "reusing" in capsys.readouterr().out


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_corrupt_onnx_is_a_clear_exit_4(tmp_path, capsys):
    src = _copy_model(SHIPPED_FP32, tmp_path / "c")
    src.write_bytes(src.read_bytes()[:5000])
    assert main(["--from-onnx", str(src), "--fp16"]) == 4
    err = capsys.readouterr().err
    assert "not a readable ONNX model" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_onnx_that_does_not_match_its_sidecar_fails_the_check(tmp_path, capsys):
    src = _copy_model(SHIPPED_FP32, tmp_path / "m")
    side = sidecar_path(src)
    d = json.loads(side.read_text())
    d["num_dense"] = d["num_dense"] + 5
    side.write_text(json.dumps(d))
    assert main(["--from-onnx", str(src)]) == 4
    assert "output shapes do not match its sidecar" in capsys.readouterr().err


@needs_shipped
def test_int8_default_without_onnx_checks_the_recorded_hash(tmp_path, monkeypatch, capsys):
    """The base install has no onnx package: the file's hash, recorded when it was linted, stands in for the lint."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["--int8", "--out", str(tmp_path / "o"), "--no-progress"]) == 3
    assert "unchanged since its Q/DQ lint" in capsys.readouterr().out
    fake = tmp_path / "assets"
    fp32 = _copy_model(SHIPPED_FP32, fake)
    int8 = _copy_model(SHIPPED_INT8, fake, "model.int8.onnx")
    with open(int8, "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(int8_step, "shipped_files", lambda: (fp32, int8))
    assert main(["--int8", "--out", str(tmp_path / "p"), "--no-progress"]) == 4  # a failed check, onnx or not
    assert "changed since it was made, linted and gated" in capsys.readouterr().err


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_dla_trtexec_lines_use_a_static_profile(tmp_path, capsys):
    src = _copy_model(SHIPPED_FP32, tmp_path / "d")
    assert main(["--from-onnx", str(src), "--fp16", "--dla-core", "0", "--batch", "1:4:16"]) == 3
    out = capsys.readouterr().out
    s = json.loads(Path(str(src) + ".json").read_text())["input"]["preprocess"]["input_size"]
    assert f"--minShapes=input:4x3x{s}x{s} --optShapes=input:4x3x{s}x{s} --maxShapes=input:4x3x{s}x{s}" in out
    assert "--useDLACore=0" in out


@pytest.mark.skipif(not SHIPPED_FP32.is_file(), reason="no shipped model")
def test_calibration_without_the_export_extra_says_what_to_install(other_onnx, tmp_path, monkeypatch, capsys):
    import numpy as np

    from fa3d.calibration.calibset import CalibrationSet, save_calibration_set

    pre = read_sidecar(other_onnx).preprocess
    s = pre.input_size
    calib = save_calibration_set(CalibrationSet(inputs=np.zeros((8, 3, s, s), np.float32),
                                                names=tuple(map(str, range(8))), preprocess=pre, source="zeros"),
                                 tmp_path / "c.npz")
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    rc = main(["--from-onnx", str(other_onnx), "--int8", "--calib", str(calib), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "fa3d[export]" in err and "Traceback" not in err
