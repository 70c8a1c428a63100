"""fa-latency: the reference network is MobileNet-V1 x0.5 at 120 px, and ratios come from one interleaved run."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from fa3d.export import latency  # noqa: E402


def test_reference_is_mobilenet_v1_half_width():
    net = latency.reference_network()
    # 3DDFA_V2's mb05: 0.85 M parameters, 46.5 M MACs at 120x120 with 62 outputs (the MobileNet paper's architecture at width 0.5)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.85e6, rel=0.02)
    assert latency.count_macs(net, 120) == pytest.approx(46.5e6, rel=0.01)
    assert net(torch.zeros(2, 3, 120, 120))["params"].shape == (2, 62)


def test_cli_reports_ratios_to_the_reference(tmp_path, capsys):
    out = tmp_path / "lat.json"
    rc = latency.main(["--preset", "tiny_mobile", "--preset", "tiny", "--threads", "1", "--rounds", "2",
                       "--calls", "2", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == [latency.REFERENCE, "tiny_mobile", "tiny"]
    assert rows[0]["ratio"] == 1.0 and all(r["ratio"] > 0 and r["nodes"] > 0 for r in rows)
    assert rows[0]["macs_m"] == pytest.approx(46.5, abs=0.5)
    assert "ratio" in capsys.readouterr().out


def test_two_files_of_one_name_are_timed_on_their_own_rows(tmp_path, plumbing_model):
    """a/model.onnx and b/model.onnx used to share one timing (keyed by name): the second hid the first."""
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(plumbing_model, tmp_path / d / "model.onnx")
    out = tmp_path / "lat.json"
    rc = latency.main(["--onnx", str(tmp_path / "a" / "model.onnx"), "--onnx", str(tmp_path / "b" / "model.onnx"),
                       "--threads", "1", "--rounds", "2", "--calls", "2", "--json", str(out)])
    assert rc == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == [latency.REFERENCE, "model.onnx", "model.onnx#2"]


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--threads", "x"], ["--onnx", "/nonexistent.onnx"],
                                  ["--rounds", "0"]])
def test_cli_usage_errors(argv, capsys):
    assert latency.main(argv) == 2
    assert "fa-latency:" in capsys.readouterr().err


def test_cli_unknown_preset(capsys):
    assert latency.main(["--preset", "huge", "--rounds", "1", "--calls", "1", "--threads", "1"]) == 2
    assert "unknown preset" in capsys.readouterr().err
