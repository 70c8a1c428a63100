"""Triton model repository: layout, config.pbtxt, plan vs ONNX platform, atomic replacement."""

from __future__ import annotations

import shutil

import pytest

from fa3d.export.triton import config_pbtxt, write_triton_repo
from fa3d.runtime.metadata import read_sidecar, sidecar_path, write_metadata


def _fake_plan(tmp_path, onnx_path, max_batch=8):
    """A .plan placeholder file with an engine sidecar (the repository writer only copies the bytes)."""
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"placeholder bytes, not an engine")
    meta = read_sidecar(onnx_path).with_(format="tensorrt", engine={
        "profile": {"input": "input", "min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [max_batch, 3, 32, 32]}})
    write_metadata(sidecar_path(plan), meta)
    return plan


def test_plan_repository(tmp_path, tiny_onnx):
    plan = _fake_plan(tmp_path, tiny_onnx)
    res = write_triton_repo(tmp_path / "repo", plan, max_batch=8, preferred=(2, 4, 99))
    assert res.platform == "tensorrt_plan" and res.artifact == tmp_path / "repo" / "fa3d" / "1" / "model.plan"
    assert res.artifact.read_bytes() == plan.read_bytes()
    cfg = res.config.read_text()
    assert 'platform: "tensorrt_plan"' in cfg and "max_batch_size: 8" in cfg
    assert "preferred_batch_size: [ 2, 4 ]" in cfg  # 99 > max batch is dropped
    assert "kind: KIND_GPU" in cfg and "dims: [ 10, 3 ]" in cfg  # the fixture's 10 dense points
    assert [p.name for p in (tmp_path / "repo").iterdir()] == ["fa3d"]  # no temporary folder left


def test_max_batch_beyond_the_engine_profile(tmp_path, tiny_onnx):
    plan = _fake_plan(tmp_path, tiny_onnx, max_batch=4)
    with pytest.raises(ValueError, match="exceeds the engine profile's max batch 4"):
        write_triton_repo(tmp_path / "repo", plan, max_batch=8)
    assert not (tmp_path / "repo" / "fa3d").exists()


def test_replaces_an_existing_entry(tmp_path, tiny_onnx):
    write_triton_repo(tmp_path / "repo", _fake_plan(tmp_path, tiny_onnx), max_batch=8)
    res = write_triton_repo(tmp_path / "repo", tiny_onnx, max_batch=4)
    assert res.platform == "onnxruntime_onnx"
    assert sorted(p.name for p in (res.model_dir / "1").iterdir()) == ["model.onnx", "model.onnx.json"]
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["fa3d"]


def test_failure_leaves_the_old_entry(tmp_path, tiny_onnx, monkeypatch):
    first = write_triton_repo(tmp_path / "repo", tiny_onnx, max_batch=4)
    before = first.config.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", boom)
    with pytest.raises(OSError, match="disk full"):
        write_triton_repo(tmp_path / "repo", tiny_onnx, max_batch=2)
    assert first.config.read_text() == before
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["fa3d"]


def test_config_text_is_exact():
    text = config_pbtxt("m", "onnxruntime_onnx", 64, 5, 2, ())
    assert text.startswith('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 2\ninput [\n')
    assert "preferred_batch_size" not in text and "instance_group" not in text
