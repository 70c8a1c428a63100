"""Hostile training configs and checkpoints: wrong types and ranges in every table (the key is named), broken
TOML, resume states that are missing or incomplete, command-line overrides out of range."""

from __future__ import annotations

import math

import pytest

from hostile_helpers import REPO, SHIPPED_CHECKPOINT, one_line_error

pytest.importorskip("torch")

from fa3d.training.cli_train import main as train_main  # noqa: E402
from fa3d.training.config import ConfigError, config_from_dict, load_config  # noqa: E402

SMOKE = REPO / "training" / "configs" / "smoke.toml"
SOURCES = [{"kind": "synthetic", "count": 16}]


def _cfg(**tables):
    d = {k: dict(v) for k, v in tables.items()}
    d.setdefault("data", {}).setdefault("sources", SOURCES)
    return config_from_dict(d)


@pytest.mark.parametrize("table,key,value,needle", [
    ("optim", "epochs", -1, "epochs must be > 0"),
    ("optim", "epochs", 0, "epochs must be > 0"),
    ("optim", "epochs", 2.5, "epochs must be an integer"),
    ("data", "batch_size", "eight", "batch_size must be an integer, got 'eight'"),
    ("data", "batch_size", True, "batch_size must be an integer"),
    ("data", "num_workers", -2, "num_workers must be >= 0"),
    ("optim", "lr", math.nan, "lr must be a finite number"),
    ("optim", "lr", math.inf, "lr must be a finite number"),
    ("optim", "lr", 0.0, "lr must be > 0"),
    ("optim", "amp", "yes", "amp must be true or false"),
    ("augment", "flip_prob", 1.5, "flip_prob must be in [0, 1]"),
    ("augment", "rotation_deg", -3.0, "rotation_deg must be >= 0"),
    ("loss", "coords", "1", "coords must be a number"),
    ("teacher_forcing", "p0", 2.0, "p0 must be in [0, 1]"),
    ("run", "tensorboard", 1, "tensorboard must be true or false"),
    ("run", "seed", -1, "seed must be >= 0"),
    ("run", "out_dir", 5, "out_dir must be a string"),
    ("model", "num_dense", "468", "num_dense must be an integer"),
    ("model", "fuse_pose", "false", "fuse_pose must be true or false"),
])
def test_every_table_checks_types_and_ranges_and_names_the_key(table, key, value, needle):
    with pytest.raises(ConfigError, match=rf"\[{table}\]: ") as e:
        _cfg(**{table: {key: value}})
    assert needle in str(e.value)


def test_source_entries_are_checked_too():
    with pytest.raises(ConfigError, match=r"\[\[data.sources\]\]: count must be >= 0"):
        config_from_dict({"data": {"sources": [{"kind": "synthetic", "count": -5}]}})
    with pytest.raises(ConfigError, match=r"weight must be a number"):
        config_from_dict({"data": {"sources": [{"kind": "synthetic", "weight": [1]}]}})


def test_the_shipped_configs_still_pass():
    """Every config in training/configs loads (none is skipped); the ones the docs name must be there."""
    configs = {p.stem: p for p in (REPO / "training" / "configs").glob("*.toml")}
    assert {"smoke", "edge", "paper", "default"} <= set(configs), sorted(configs)
    for p in configs.values():
        load_config(p)


@pytest.mark.parametrize("old,new,needle", [
    ("epochs = 6", "epochs = -1", "epochs must be > 0"),
    ("batch_size = 8", 'batch_size = "eight"', "batch_size must be an integer"),
    ("[optim]", "[optim", "not valid TOML"),
    ("[optim]", "\udcff\udcfe", "not valid TOML"),  # bytes that are not UTF-8
    ("epochs = 6", "epohcs = 3", "unknown keys ['epohcs']"),
    ('device = "cpu"', 'device = "tpu"', "device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'"),
    ('preset = "tiny"', 'preset = "huge"', "unknown preset 'huge'"),
    ('fuse_pose = true', 'fuse_pose = true\n[model.overrides]\nno_such_field = 3', "no_such_field"),
])
def test_fa_train_exits_2_with_one_line(tmp_path, capsys, old, new, needle):
    cfg = tmp_path / "c.toml"
    text = SMOKE.read_text()
    assert old in text
    cfg.write_bytes(text.replace(old, new, 1).encode("utf-8", "surrogateescape"))
    rc = train_main(["--config", str(cfg), "--out-dir", str(tmp_path / "run"), "--no-progress"])
    assert rc == 2
    assert needle in one_line_error(capsys.readouterr().err, "fa-train")
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("argv", [["--epochs", "-1"], ["--epochs", "x"], ["--stop-after-steps", "0"]])
def test_fa_train_command_line_overrides_are_range_checked(argv, capsys):
    assert train_main(["--config", str(SMOKE), *argv]) == 2
    assert "fa-train: error: argument" in capsys.readouterr().err


def _last_pt_with_resume(path, resume):
    import torch

    from fa3d.training.checkpoint import read_checkpoint

    ckpt = read_checkpoint(SHIPPED_CHECKPOINT)
    if resume is not None:
        ckpt["resume"] = resume
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)


@pytest.mark.parametrize("resume,needle", [
    ({"epoch": 1, "step": 3, "position": 0, "history": {}, "best": 1.0}, "lacks ['optimizer', 'scheduler'"),
    (None, "has no resume state"),
])
def test_resume_from_a_checkpoint_without_optimizer_state_is_a_clear_error(tmp_path, capsys, resume, needle):
    _last_pt_with_resume(tmp_path / "run" / "last.pt", resume)
    rc = train_main(["--config", str(SMOKE), "--out-dir", str(tmp_path / "run"), "--resume", "--no-progress"])
    assert rc == 2
    assert needle in one_line_error(capsys.readouterr().err, "fa-train")


def test_resume_from_a_corrupt_last_pt(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"PK\x03\x04 truncated zip")
    rc = train_main(["--config", str(SMOKE), "--out-dir", str(tmp_path / "run"), "--resume", "--no-progress"])
    assert rc == 2
    assert "not a loadable weights-only checkpoint" in one_line_error(capsys.readouterr().err, "fa-train")
