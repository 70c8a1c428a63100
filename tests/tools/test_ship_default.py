"""ship_default: the ONNX goes to the runtime's assets, the torch checkpoint to fa-export's (not the runtime's)."""

from __future__ import annotations

import pytest

from fa3d.export import defaults
from tools import ship_default


@pytest.mark.slow
def test_ship_default_splits_runtime_and_export_assets(tmp_path, monkeypatch):
    import torch

    import fa3d.training.checkpoint as ck
    from fa3d.training import build_model

    torch.manual_seed(0)
    src = ck.save_checkpoint(tmp_path / "tiny.pt", build_model("tiny", num_dense=16).eval())
    monkeypatch.setattr(ship_default, "asset_path", lambda rel: tmp_path / "runtime_assets" / rel)
    monkeypatch.setattr(ship_default, "export_asset_path", lambda rel: tmp_path / "export_assets" / rel)
    monkeypatch.setattr(defaults, "export_asset_path", lambda rel: tmp_path / "export_assets" / rel)
    sizes = ship_default.ship_default(src)
    assert set(sizes) == {"model.pt", "model.onnx", "model.onnx.json"}
    assert sorted(p.name for p in (tmp_path / "runtime_assets" / "default").iterdir()) == ["model.onnx",
                                                                                          "model.onnx.json"]
    assert [p.name for p in (tmp_path / "export_assets" / "default").iterdir()] == ["model.pt"]
    assert defaults.default_checkpoint_path() == tmp_path / "export_assets" / "default" / "model.pt"


def test_missing_shipped_checkpoint_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(defaults, "export_asset_path", lambda rel: tmp_path / rel)
    with pytest.raises(FileNotFoundError, match="give a checkpoint explicitly"):
        defaults.default_checkpoint_path()
