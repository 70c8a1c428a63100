"""fa-bench-torch: fa-bench with PyTorch rows (moved from tests/runtime/test_bench.py with the PyTorch timer)."""

from __future__ import annotations

import json

import pytest

from fa3d.training.bench_torch import main


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
