"""fa-bench on the plumbing fixture model: its output format (the figures themselves mean nothing here)."""

from __future__ import annotations

import json

import pytest

import fa3d.runtime.aligner as aligner_mod
from fa3d.runtime.bench import main
from rt_helpers import BlobDetector


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


@pytest.mark.slow
def test_bench_pytorch_checkpoint(tmp_path, capsys):
    """PyTorch rows from a checkpoint of the `tiny` preset (random weights: timing plumbing only)."""
    torch = pytest.importorskip("torch")
    from fa3d.training.checkpoint import save_checkpoint
    from fa3d.training.model import build_model

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model("tiny").eval())
    out = tmp_path / "b.json"
    assert main(["--checkpoint", str(ckpt), "--batch", "1,2", "--iters", "2", "--warmup", "1", "--threads", "1",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in d["model"]] == [("pytorch", 1), ("pytorch", 2)]
    assert d["pipeline"] is None  # no ONNX/engine given: no pipeline
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--no-pipeline"]) == 4
    assert "checkpoint not found" in capsys.readouterr().err
