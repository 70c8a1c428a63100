"""The maintainers' INT8 shipping command: a new default model never keeps the INT8 file of the old one."""

from __future__ import annotations

import shutil

import pytest

from fa3d.export.int8_step import shipped_files
from tools.ship_default import refresh_int8
from tools.ship_int8 import main as ship_int8_main


def test_without_data_the_stale_int8_file_is_removed(tmp_path):
    (tmp_path / "model.int8.onnx").write_bytes(b"old")
    (tmp_path / "model.int8.onnx.json").write_text("{}")
    msg = refresh_int8(tmp_path, tmp_path / "no-data", skip=False)
    assert "not shipped" in msg and "no aflw19k data set" in msg
    assert not (tmp_path / "model.int8.onnx").exists() and not (tmp_path / "model.int8.onnx.json").exists()
    assert "--no-int8" in refresh_int8(tmp_path, None, skip=True)


def test_ship_int8_without_data_is_exit_2(tmp_path, capsys):
    assert ship_int8_main(["--data", str(tmp_path), "--dest", str(tmp_path)]) == 2
    assert "no aflw19k data set" in capsys.readouterr().err


@pytest.mark.data
@pytest.mark.slow
def test_ship_int8_reproduces_the_shipped_file(aflw19k, tmp_path):
    """The one command regenerates an INT8 file that passes the labelled gate, from the shipped FP32 ONNX."""
    from tools.ship_int8 import ShipInt8Recipe, ship_int8
    from fa3d.runtime.metadata import read_sidecar, sha256_file, sidecar_path

    fp32, int8 = shipped_files()
    shutil.copyfile(fp32, tmp_path / "model.onnx")
    shutil.copyfile(sidecar_path(fp32), sidecar_path(tmp_path / "model.onnx"))
    res = ship_int8(aflw19k, tmp_path, ShipInt8Recipe(calib_max=32, val_max=64), progress=False)
    assert res.passed and res.report["final"]["reference"] == "labels"
    assert read_sidecar(tmp_path / "model.int8.onnx").source_sha256 == sha256_file(fp32)
