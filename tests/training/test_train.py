"""fa-train end to end on synthetic faces: the loss falls, checkpoints reload, resume is exact."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from fa3d.runtime import preprocess
from fa3d.training.checkpoint import CheckpointError, export_weights_only, load_checkpoint, read_checkpoint
from fa3d.training.cli_train import main
from fa3d.training.config import ConfigError, config_from_dict, load_config
from fa3d.training.train import train

pytest.importorskip("fa3d.data.datasets.synthetic")
REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "training" / "configs" / "smoke.toml"


def test_example_configs_parse():
    for name in ("smoke", "edge", "paper"):
        cfg = load_config(REPO / "training" / "configs" / f"{name}.toml")
        assert cfg.data.sources
    assert load_config(REPO / "training/configs/paper.toml").model.preset == "paper"
    with pytest.raises(ConfigError, match="unknown keys"):
        config_from_dict({"data": {"sources": [{"kind": "synthetic", "count": 1}]}, "optim": {"lrr": 1}})
    with pytest.raises(ConfigError, match="sources"):
        config_from_dict({"data": {}})


def test_smoke_run_learns_and_leaves_a_loadable_checkpoint(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    rc = main(["--config", str(SMOKE), "--out-dir", str(out), "--no-progress", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_done"] == 6 and summary["step"] == 24
    for f in ("last.pt", "best.pt", "epochs.csv", "steps.csv", "curve.png"):
        assert (out / f).is_file(), f
    steps = list(csv.DictReader(open(out / "steps.csv")))
    loss = np.array([float(r["loss"]) for r in steps])
    assert len(loss) == 24
    assert loss[-6:].mean() < 0.9 * loss[:6].mean(), loss  # measured: 0.99 -> 0.82
    heat = np.array([float(r["heatmap"]) for r in steps])
    assert heat[-6:].mean() < 0.6 * heat[:6].mean(), heat  # measured: 0.25 -> 0.11
    epochs = list(csv.DictReader(open(out / "epochs.csv")))
    assert float(epochs[-1]["val_loss"]) < float(epochs[0]["val_loss"])
    assert "nme68" in epochs[0] and "pose_mae" in epochs[0]
    # weights-only loading and prediction through the runtime's preprocessing
    raw = torch.load(out / "best.pt", weights_only=True)
    assert raw["mean_shape"].shape == (68, 3) and raw["landmark_schema"]["name"] == "ibug68"
    assert "resume" not in raw and "resume" in torch.load(out / "last.pt", weights_only=True)
    ck = load_checkpoint(out / "best.pt")
    assert not ck.model.training and ck.metadata.format == "checkpoint"
    assert ck.metadata.model["preset"] == "tiny" and ck.metadata.num_dense == ck.model.num_dense
    assert ck.metadata.model["training_data"] == ["synthetic:count=32,seed=1:train"]
    from fa3d.data.datasets.synthetic import synth_face

    f = synth_face(99, 96)
    prep = preprocess.prepare(f.image, f.box, ck.metadata.preprocess)
    with torch.no_grad():
        pred = ck.model(torch.from_numpy(prep.inputs))
    lm = preprocess.to_image(pred["landmarks"].numpy().astype(np.float64), prep.transforms)
    assert lm.shape == (1, 68, 3) and np.isfinite(lm).all()
    # shipping copy without the resume state
    shipped = export_weights_only(out / "last.pt", tmp_path / "ship.pt")
    assert "resume" not in torch.load(shipped, weights_only=True)
    assert load_checkpoint(shipped).model_config == ck.model_config
    # float16 storage: half the weight bytes, loaded back into the float32 model with the rounded values
    half = export_weights_only(out / "last.pt", tmp_path / "ship16.pt", half=True)
    sd16 = torch.load(half, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd16.values() if v.is_floating_point())
    m16 = load_checkpoint(half).model
    name, p = next(iter(m16.named_parameters()))
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, ck.model.state_dict()[name].half().float())


def _resume_cfg(out: Path):
    cfg = load_config(SMOKE)
    data = replace(cfg.data, sources=(replace(cfg.data.sources[0], count=16),),
                   val=(replace(cfg.data.val[0], count=8),))
    return replace(cfg, data=data, optim=replace(cfg.optim, epochs=3),
                   run=replace(cfg.run, out_dir=str(out), checkpoint_every=4))


def test_a_stop_at_an_epochs_last_step_comes_before_its_validation(tmp_path):
    """What --stop-after-steps' help says: N = an epoch's last step leaves that epoch unvalidated (no best.pt),
    N + 1 includes it (2 steps an epoch here)."""
    torch.set_num_threads(1)
    at_end = train(_resume_cfg(tmp_path / "at_end").with_run(stop_after_steps=2), progress=False)
    assert at_end.stopped_early and at_end.epochs_done == 0 and not (tmp_path / "at_end" / "best.pt").exists()
    one_more = train(_resume_cfg(tmp_path / "one_more").with_run(stop_after_steps=3), progress=False)
    assert one_more.epochs_done == 1 and (tmp_path / "one_more" / "best.pt").exists()


def test_resume_after_interruption_is_exact(tmp_path):
    torch.set_num_threads(1)
    full = train(_resume_cfg(tmp_path / "full"), progress=False)
    assert full.step == 6 and not full.stopped_early
    cut = train(_resume_cfg(tmp_path / "cut").with_run(stop_after_steps=3), progress=False)
    assert cut.stopped_early and cut.step == 3  # killed in the middle of epoch 2
    resumed = train(_resume_cfg(tmp_path / "cut"), resume=True, progress=False)
    assert resumed.step == 6 and resumed.epochs_done == 3
    a = read_checkpoint(tmp_path / "full" / "last.pt")
    b = read_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in a["state_dict"].items():
        assert torch.allclose(v.float(), b["state_dict"][k].float(), atol=1e-6, rtol=0), k
    sa, sb = a["resume"]["optimizer"]["state"], b["resume"]["optimizer"]["state"]
    for i in sa:
        assert torch.allclose(sa[i]["exp_avg"], sb[i]["exp_avg"], atol=1e-6, rtol=0)
    assert a["resume"]["scheduler"]["last_epoch"] == b["resume"]["scheduler"]["last_epoch"] == 6
    assert [r["loss"] for r in a["resume"]["history"]["steps"]] == pytest.approx(
        [r["loss"] for r in b["resume"]["history"]["steps"]], abs=1e-6)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    torch.save({"format": "fa3d.checkpoint", "format_version": 99}, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "v99.pt")


def test_cli_reports_config_errors(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    """DistributedDataParallel under torchrun (gloo on CPU): both ranks train, rank 0 writes."""
    import shutil
    import subprocess
    import sys

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists() and shutil.which("torchrun") is None:
        pytest.skip("torchrun not found next to the interpreter")
    cfg = tmp_path / "ddp.toml"
    text = SMOKE.read_text().replace("count = 32", "count = 16").replace("epochs = 6", "epochs = 1")
    cfg.write_text(text)
    out = tmp_path / "ddp"
    res = subprocess.run([str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node", "2",
                          "--master_port", "29517", "-m", "fa3d.training.cli_train", "--config", str(cfg),
                          "--out-dir", str(out), "--no-progress", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    assert json.loads(lines[0])["step"] == 1  # 16 samples / 2 ranks / batch 8
    assert load_checkpoint(out / "last.pt").model_config.preset == "tiny"


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(_resume_cfg(tmp_path / "empty"), resume=True, progress=False)


def test_init_from_starts_a_new_run_from_trained_weights(tmp_path):
    """[run] init_from: a second schedule from a trained model's weights (step 0, fresh optimizer)."""
    torch.set_num_threads(1)
    first = train(_resume_cfg(tmp_path / "first").with_run(stop_after_steps=2), progress=False)
    assert first.step == 2
    start = read_checkpoint(tmp_path / "first" / "last.pt")["state_dict"]
    # zero epochs would not train; stop after the first step and compare with the weights it started from
    cfg = _resume_cfg(tmp_path / "second").with_run(init_from=str(tmp_path / "first" / "last.pt"),
                                                     stop_after_steps=1)
    cfg = replace(cfg, optim=replace(cfg.optim, lr=1e-12, weight_decay=0.0))
    second = train(cfg, progress=False)
    assert second.step == 1  # a new run: its own step count
    after = read_checkpoint(tmp_path / "second" / "last.pt")["state_dict"]
    assert after.keys() == start.keys()
    weights = [k for k in start if start[k].is_floating_point() and "running_" not in k]  # BN statistics move
    moved = max(float((after[k] - start[k]).abs().max()) for k in weights)
    assert moved < 1e-4, moved  # lr ~ 0: the second run holds the first run's weights, not a new initialisation
    wrong = replace(cfg, model=replace(cfg.model, fuse_pose=False))
    with pytest.raises((ConfigError, CheckpointError)):
        train(wrong.with_run(out_dir=str(tmp_path / "third")), progress=False)
    with pytest.raises(CheckpointError, match="not found"):
        train(cfg.with_run(init_from=str(tmp_path / "nope.pt"), out_dir=str(tmp_path / "fourth")), progress=False)


def test_init_from_a_last_pt_starts_from_its_weight_average(tmp_path, capsys):
    """A last.pt of a run with [optim] ema_decay: the new run starts from the average (what best.pt and the
    validation hold), not from the raw weights of the last step."""
    torch.set_num_threads(1)
    cfg = _resume_cfg(tmp_path / "first")
    cfg = replace(cfg, optim=replace(cfg.optim, ema_decay=0.5))
    train(cfg.with_run(stop_after_steps=3), progress=False)
    first = read_checkpoint(tmp_path / "first" / "last.pt")
    average, raw = first["resume"]["ema"]["weights"], first["state_dict"]
    weights = [k for k in raw if raw[k].is_floating_point() and "running_" not in k]
    assert max(float((average[k] - raw[k]).abs().max()) for k in weights) > 1e-4  # the two differ
    second = replace(cfg, optim=replace(cfg.optim, lr=1e-12, weight_decay=0.0))
    train(second.with_run(init_from=str(tmp_path / "first" / "last.pt"), out_dir=str(tmp_path / "second"),
                          stop_after_steps=1), progress=False)
    assert "starting from its weight average" in capsys.readouterr().err
    after = read_checkpoint(tmp_path / "second" / "last.pt")["state_dict"]
    assert max(float((after[k] - average[k]).abs().max()) for k in weights) < 1e-6  # lr ~ 0: the start
    damaged = dict(first, resume=dict(first["resume"], ema={"decay": 0.5}))
    torch.save(damaged, tmp_path / "damaged.pt")
    with pytest.raises(CheckpointError, match="weight average"):
        train(second.with_run(init_from=str(tmp_path / "damaged.pt"), out_dir=str(tmp_path / "third")),
              progress=False)


def test_train_only_trains_the_named_parameters_alone(tmp_path):
    """[optim] train_only = ["confidence"]: the confidence layer learns, every other weight and batch-norm
    statistic stays as it started; a prefix that names nothing is a clear error."""
    torch.set_num_threads(1)
    cfg = _resume_cfg(tmp_path / "first")
    cfg = replace(cfg, optim=replace(cfg.optim, ema_decay=0.0))
    train(cfg.with_run(stop_after_steps=1), progress=False)
    start = read_checkpoint(tmp_path / "first" / "last.pt")["state_dict"]
    only = replace(cfg, optim=replace(cfg.optim, train_only=("confidence",), lr=1e-2, warmup_steps=0))
    train(only.with_run(init_from=str(tmp_path / "first" / "last.pt"), out_dir=str(tmp_path / "second"),
                        stop_after_steps=3), progress=False)
    after = read_checkpoint(tmp_path / "second" / "last.pt")["state_dict"]
    floats = [k for k in start if start[k].is_floating_point()]
    moved = {k for k in floats if not torch.equal(after[k], start[k])}
    assert moved and all(k.startswith("confidence") for k in moved), sorted(moved)[:5]
    assert any("running_mean" in k for k in floats)  # the network has batch norm, held fixed above
    with pytest.raises(ConfigError, match="names no parameter"):
        train(replace(only, optim=replace(only.optim, train_only=("confidance",))).with_run(
            out_dir=str(tmp_path / "third")), progress=False)
    with pytest.raises(ConfigError, match="train_only must be an array"):
        d = only.to_dict()
        d["optim"]["train_only"] = "confidence"
        config_from_dict(d)
    with pytest.raises(ConfigError, match="parameter-name prefixes"):
        d["optim"]["train_only"] = [""]  # an empty prefix would name every parameter
        config_from_dict(d)


def test_frozen_statistics_are_held_only_under_train_only():
    """A batch norm without parameters (affine=False) has nothing to freeze: it keeps learning its statistics in
    an ordinary run; under train_only a batch norm whose parameters are frozen holds its statistics."""
    from fa3d.training.train import _hold_frozen_statistics
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3, affine=False), torch.nn.BatchNorm2d(3))
    net.train()
    _hold_frozen_statistics(net, ())
    assert net[0].training and net[1].training
    net[1].weight.requires_grad_(False)
    net[1].bias.requires_grad_(False)
    _hold_frozen_statistics(net, ("confidence",))
    assert not net[0].training and not net[1].training


def test_seed_flag_overrides_the_config(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    rc = main(["--config", str(SMOKE), "--out-dir", str(out), "--no-progress", "--json", "--seed", "7",
               "--stop-after-steps", "1"])
    assert rc == 0
    assert read_checkpoint(out / "last.pt")["train_config"]["run"]["seed"] == 7


def test_validation_reports_the_yaw_of_the_pose_the_runtime_reports():
    """fit_yaw_only_mae: the yaw of the rotation fitted to the predicted landmarks against the human yaw."""
    from fa3d.runtime.pose import matrix_to_euler, rotation_from_landmarks
    from fa3d.training.augment import AugmentConfig, collate
    from fa3d.training.dataset import AlignmentDataset, MixedSamples, default_registry
    from fa3d.training.train import build_from_config, evaluate

    torch.manual_seed(0)
    cfg = load_config(SMOKE)
    model = build_from_config(cfg).eval()
    pre = preprocess.PreprocessConfig(input_size=model.config.input_size)
    ds = AlignmentDataset(MixedSamples(cfg.data.val, default_registry()), pre, AugmentConfig.off(), 0, 0, None)
    batch = collate([ds[i] for i in range(4)])
    with torch.no_grad():
        lm = model(batch["image"])["landmarks"].float().numpy()
    fitted = matrix_to_euler(rotation_from_landmarks(lm))[:, 0]
    batch.update(has_yaw=torch.ones(4), yaw_gt=torch.from_numpy(fitted + 5.0).float())
    m = evaluate(model, [batch], torch.device("cpu"), cfg)
    assert m["fit_yaw_only_mae"] == pytest.approx(5.0, abs=1e-3)
    assert "yaw_only_mae" in m  # the pose head's, beside it


def test_ema_is_validated_saved_as_best_and_resumed_exactly(tmp_path):
    """[optim] ema_decay: the average is what best.pt holds, and --resume continues it exactly."""
    torch.set_num_threads(1)

    def cfg(out, epochs=3):
        c = _resume_cfg(out)
        return replace(c, optim=replace(c.optim, ema_decay=0.5, epochs=epochs))

    train(cfg(tmp_path / "full"), progress=False)
    assert train(cfg(tmp_path / "cut").with_run(stop_after_steps=3), progress=False).stopped_early
    train(cfg(tmp_path / "cut"), resume=True, progress=False)
    a, b = read_checkpoint(tmp_path / "full" / "last.pt"), read_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in a["resume"]["ema"]["weights"].items():
        assert torch.allclose(v.float(), b["resume"]["ema"]["weights"][k].float(), atol=1e-6, rtol=0), k
    train(cfg(tmp_path / "one", epochs=1), progress=False)  # one epoch: best.pt is that epoch's average
    last = read_checkpoint(tmp_path / "one" / "last.pt")
    best = read_checkpoint(tmp_path / "one" / "best.pt")["state_dict"]
    ema, raw = last["resume"]["ema"]["weights"], last["state_dict"]
    floats = [k for k in raw if raw[k].is_floating_point()]
    assert max(float((ema[k].float() - raw[k].float()).abs().max()) for k in floats) > 1e-4  # not the raw weights
    for k in floats:
        assert torch.equal(best[k].float(), ema[k].float()), k  # best.pt holds the average


def test_yaw_weights_oversample_large_poses(tmp_path):
    from fa3d.training.dataset import MixedSamples, _sample_weights
    from fa3d.training.config import SourceConfig

    class Part(list):
        def teacher_yaw_bins(self):
            return np.array([0, 0, 0, 1, 2])

    part = Part(range(5))
    w = _sample_weights(part, SourceConfig(kind="x", weight=2.0, yaw_weights=(1.0, 2.0, 4.0)))
    assert w.sum() == pytest.approx(2.0) and w[4] == pytest.approx(4 * w[0]) and w[3] == pytest.approx(2 * w[0])
    flat = _sample_weights(part, SourceConfig(kind="x"))
    assert np.allclose(flat, 0.2)
    mixed = MixedSamples([SourceConfig(kind="x", yaw_weights=(1.0, 1.0, 3.0))], {"x": lambda src: Part(range(5))})
    assert mixed.weights[4] == pytest.approx(3 * mixed.weights[0])
    with pytest.raises(ConfigError, match="yaw_weights"):
        MixedSamples([SourceConfig(kind="x", yaw_weights=(1.0, 1.0, 3.0))], {"x": lambda src: list(range(5))})
    with pytest.raises(ConfigError, match="yaw_weights"):
        config_from_dict({"data": {"sources": [{"kind": "synthetic", "count": 1, "yaw_weights": [1, 2]}]}})


def test_dense_landmark_grad_reaches_the_network_and_is_checked():
    from fa3d.training.train import build_from_config

    cfg = load_config(SMOKE)
    assert build_from_config(cfg).dense_landmark_grad == 1.0  # v1-v4's behaviour by default
    d = {"data": {"sources": [{"kind": "synthetic", "count": 1}]}, "model": {"preset": "tiny"},
         "loss": {"dense_landmark_grad": 0.0}}
    assert build_from_config(config_from_dict(d)).dense_landmark_grad == 0.0
    d["loss"]["dense_landmark_grad"] = 1.5
    with pytest.raises(ConfigError, match="dense_landmark_grad must be in"):
        config_from_dict(d)


def _poisoned_losses(monkeypatch, bad_steps):
    """Make the trainer's loss non-finite on the given (1-based) steps; returns the step counter."""
    import fa3d.training.train as train_mod

    real = train_mod.compute_losses
    seen = {"n": 0}

    def losses(out, batch, *args, **kwargs):
        result = real(out, batch, *args, **kwargs)
        if out["landmarks"].requires_grad:  # a training step, not validation
            seen["n"] += 1
            if seen["n"] in bad_steps:
                result["total"] = result["total"] * float("nan")
        return result

    monkeypatch.setattr(train_mod, "compute_losses", losses)
    return seen


def test_a_step_with_a_non_finite_loss_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    """v5a's seventh cycle died at step ~2,900 of 3,000 on an SVD of NaN predictions; one bad batch must leave
    the weights as they were (no NaN spreads into them or into the EMA), be named, and the run go on."""
    torch.set_num_threads(1)
    _poisoned_losses(monkeypatch, {3, 7})
    cfg = load_config(SMOKE).with_run(out_dir=str(tmp_path / "run"))
    cfg = replace(cfg, optim=replace(cfg.optim, epochs=2, ema_decay=0.9))
    result = train(cfg, progress=False)
    assert result.step == 8
    err = capsys.readouterr().err
    assert "step 3: non-finite loss or gradient; step skipped" in err and "step 7:" in err
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())
    epochs = list(csv.DictReader(open(tmp_path / "run" / "epochs.csv")))
    assert all(np.isfinite(float(e["train_loss"])) and np.isfinite(float(e["val_loss"])) for e in epochs)


def test_a_diverged_run_stops_with_exit_3_and_keeps_its_last_good_state(tmp_path, monkeypatch, capsys):
    from fa3d.training.train import MAX_BAD_STEPS_IN_A_ROW

    torch.set_num_threads(1)
    _poisoned_losses(monkeypatch, set(range(1, 1000)))  # every step: diverged at step 20 of the 24
    out = tmp_path / "run"
    rc = main(["--config", str(SMOKE), "--out-dir", str(out), "--no-progress"])
    assert rc == 3
    err = capsys.readouterr().err
    assert f"{MAX_BAD_STEPS_IN_A_ROW} steps in a row had a non-finite loss or gradient" in err
    assert "the run has diverged" in err
    ck = read_checkpoint(out / "last.pt")
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


class _StandInScaler:
    """torch.amp.GradScaler's part that the divergence guard reads, enabled as with float16 AMP on CUDA (not
    available here); the test halves its scale on every skipped step, as the real scaler's update() does."""

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def is_enabled(self) -> bool:
        return True

    def get_scale(self) -> float:
        return self.scale


def _amp_guard(scale):
    from types import SimpleNamespace

    from fa3d.training.train import _count_bad_step

    run = SimpleNamespace(optimizer=SimpleNamespace(zero_grad=lambda set_to_none: None), scaler=_StandInScaler(scale),
                          dist=SimpleNamespace(main=True), out_dir=Path("run"))
    state = SimpleNamespace(step=0, bad_steps_in_a_row=0)

    def step(loss: float, finite: bool) -> None:
        if not finite:
            run.scaler.scale /= 2
        _count_bad_step(run, state, loss, finite)
        state.step += 1

    return run, state, step


def test_amp_overflows_are_the_scalers_business_but_a_nan_loss_still_stops_the_run(capsys):
    """With float16 AMP a skipped step is usually an ordinary overflow (the scaler halves its scale and retries);
    a loss that is itself NaN, or a gradient that overflows at any scale, must still end the run (exit 3)."""
    from fa3d.training.train import MAX_BAD_STEPS_IN_A_ROW, TrainingDiverged

    run, state, step = _amp_guard(65536.0)
    for _ in range(10):  # overflows at a high scale, then a good step: nothing to report
        step(0.5, False)
    step(0.5, True)
    assert state.bad_steps_in_a_row == 0 and capsys.readouterr().err == ""

    run, state, step = _amp_guard(65536.0)
    for _ in range(MAX_BAD_STEPS_IN_A_ROW - 1):
        step(float("nan"), False)
    assert "non-finite loss or gradient; step skipped" in capsys.readouterr().err
    with pytest.raises(TrainingDiverged, match="the run has diverged"):
        step(float("nan"), False)

    run, state, step = _amp_guard(65536.0)  # the loss finite, the gradient NaN whatever the scale
    with pytest.raises(TrainingDiverged):
        for _ in range(16 + MAX_BAD_STEPS_IN_A_ROW):
            step(0.5, False)
    assert run.scaler.scale < 1.0 and state.step == 16 + MAX_BAD_STEPS_IN_A_ROW - 1


@pytest.mark.cuda
def test_a_diverged_float16_amp_run_on_cuda_stops_with_exit_3(tmp_path, monkeypatch, capsys):
    """The real scaler on CUDA (the stand-in test above covers the rule on CPU): a NaN loss every step ends the run."""
    _poisoned_losses(monkeypatch, set(range(1, 1000)))
    out = tmp_path / "run"
    rc = main(["--config", str(SMOKE), "--out-dir", str(out), "--no-progress"])
    assert rc == 3 and "the run has diverged" in capsys.readouterr().err


def test_init_from_a_mean_pooled_run_into_learnt_pooling(tmp_path):
    """[model.overrides] pool_maps from a run without it (v5 from v4): the start computes what the old run's
    model computed; the same run's weights into another pooling are refused with a clear error."""
    from fa3d.training.checkpoint import load_checkpoint as load

    torch.set_num_threads(1)
    mobile = replace(_resume_cfg(tmp_path / "first"), model=replace(load_config(SMOKE).model, preset="tiny_mobile"))
    train(mobile.with_run(stop_after_steps=1), progress=False)
    start = tmp_path / "first" / "last.pt"
    cfg = replace(mobile, model=replace(mobile.model, overrides={"pool_maps": 2}),
                  optim=replace(mobile.optim, lr=1e-12, weight_decay=0.0))
    train(cfg.with_run(init_from=str(start), out_dir=str(tmp_path / "second"), stop_after_steps=1), progress=False)
    a, b = load(start).model, load(tmp_path / "second" / "last.pt").model
    assert b.config.pool_maps == 2 and a.config.pool_maps == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(a(x)["landmarks"], b(x)["landmarks"], atol=0.01)  # (one step moved the BN statistics)
    three = replace(cfg, model=replace(cfg.model, overrides={"pool_maps": 3}))
    with pytest.raises(ConfigError, match="another \\[model\\] section"):
        train(three.with_run(init_from=str(tmp_path / "second" / "last.pt"), out_dir=str(tmp_path / "third"),
                             stop_after_steps=1), progress=False)
