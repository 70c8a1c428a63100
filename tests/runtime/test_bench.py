"""fa-bench on the plumbing fixture model: its output format (the figures themselves mean nothing here)."""

from __future__ import annotations

import json

import pytest

import fa3d.runtime.aligner as aligner_mod
from fa3d.runtime.bench import main
from tests.helpers.plumbing import BlobDetector


def test_bench_model_and_pipeline_json(tmp_path, plumbing_model, blob_video, monkeypatch, capsys):
    monkeypatch.setattr(aligner_mod, "make_detector", lambda spec: BlobDetector())
    out = tmp_path / "bench.json"
    rc = main(["--model", str(plumbing_model), "--int8", str(plumbing_model), "--batch", "1,3", "--iters", "4",
               "--warmup", "2", "--video", str(blob_video), "--threads", "1", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in d["model"]] == [("onnxruntime", 1), ("onnxruntime", 3)] * 2
    for r in d["model"]:
        assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"] and r["iters"] == 4 and r["faces_per_s"] > 0
    p = d["pipeline"]
    assert p["frames"] == 30 and p["frames_with_face"] == 30 and p["tracking"] is True and p["fps"] > 0
    assert set(p["stages_ms"]) >= {"decode", "detect", "preprocess", "infer", "postprocess"}
    assert d["machine"]["cpu_count"] >= 1
    text = capsys.readouterr().out
    assert "median_ms" in text and "pipeline:" in text and "fps" in text


@pytest.mark.parametrize("args,code", [(["--model", "missing.onnx", "--no-pipeline"], 4),
                                       (["--batch", "0"], 2), (["--batch", "a,b"], 2)])
def test_bench_errors(tmp_path, args, code):
    assert main(args) == code


def test_bench_checkpoint_points_at_fa_bench_torch(tmp_path, capsys):
    """The runtime never imports torch: plain fa-bench refuses --checkpoint and names the command that times it."""
    assert main(["--checkpoint", str(tmp_path / "model.pt"), "--no-pipeline"]) == 2
    assert "fa-bench-torch" in capsys.readouterr().err
