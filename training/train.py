"""The training loop behind ``fa-train``.

Determinism and resume: example ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, the epoch's
sample order of ``(seed, e)``, and the teacher-forcing draw of step ``t`` of ``(seed, t)``; ``last.pt``
stores model, optimizer, scheduler, scaler, the RNG states, the epoch, the global step and the position
inside the epoch, so a killed run resumed with ``resume=True`` continues exactly where it stopped
(bit-exact on CPU with ``num_workers = 0`` or more).

Teacher forcing: at step ``t`` each sample with a ground-truth pose feeds its GT rotation to the fused
blocks with probability ``p(t)`` (cosine from ``p0`` to 0, :func:`~fa3d.training.losses.teacher_forcing_probability`),
the others the network's own prediction, detached: the pose head learns from the pose loss only, and the
fused blocks learn to work with whatever rotation they are given.
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from fa3d.data.evaluation.metrics import nme, yaw_bins
from fa3d.runtime.atomic import atomic_path, atomic_write_text
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.pose import matrix_to_euler, rotation_from_landmarks
from fa3d.runtime.preprocess import PreprocessConfig

from .augment import AugmentConfig, collate
from .checkpoint import (CheckpointError, check_resume_state, read_checkpoint, rng_state, save_checkpoint,
                         set_rng_state)
from .config import ConfigError, TrainConfig
from .dataset import AlignmentDataset, Loader, MixedSamples, ResumableSampler, default_registry, epoch_indices
from .dense_template import mirror_permutation
from .ema import WeightEma
from .losses import AFLW_IDX, IBUG_IDX, compute_losses, teacher_forcing_probability, yaw_of
from .mobile import PoseFusedMobileNet, adapt_state_dict
from .model import build_model

dist = lazy_import("torch.distributed")  # only under torchrun (WORLD_SIZE > 1)
matplotlib = lazy_import("matplotlib", extra="train")  # the training-curve PNG
mpl_figure = lazy_import("matplotlib.figure", extra="train")
tensorboard = lazy_import("torch.utils.tensorboard", extra="train")  # only with [run] tensorboard


class TrainingDiverged(RuntimeError):
    """Many steps in a row had a non-finite loss or gradient (:data:`MAX_BAD_STEPS_IN_A_ROW`)."""


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    step: int
    epochs_done: int
    stopped_early: bool  # stopped by stop_after_steps (as if killed), resumable from last.pt
    history: dict = field(default_factory=dict)
    best_metric: float = math.inf


@dataclass(frozen=True)
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return _Dist(world, dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(cfg: TrainConfig, d: _Dist) -> torch.device:
    want = cfg.run.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("[run] device = \"cuda\" but CUDA is not available; use \"auto\" or \"cpu\"")
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(max(t, 0.0), 1.0)))
    return f


def build_from_config(cfg: TrainConfig) -> torch.nn.Module:
    template = None
    if cfg.model.dense_template:
        p = Path(cfg.model.dense_template)
        try:
            template = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{p}: cannot read the dense template ({e}); it must be a (N, 3) .npy") from None
    try:
        model = build_model(cfg.model.preset, fuse_pose=cfg.model.fuse_pose, num_dense=cfg.model.num_dense,
                            dense_template=template, **cfg.model.overrides)
    except (TypeError, ValueError) as e:  # an unknown preset, a bad [model.overrides] key or value
        raise ConfigError(f"[model]: {e}") from None
    model.dense_landmark_grad = cfg.loss.dense_landmark_grad  # training only (fa3d.training.heads)
    return model


def _memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CPUs: oneDNN's depthwise and 1x1 convolutions train faster in NHWC
    (measured on our 2-core CPU with the edge preset); the default layout elsewhere."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _to(batch: dict, device: torch.device) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["image"] = out["image"].contiguous(memory_format=_memory_format(device))
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device, cfg: TrainConfig) -> dict[str, float]:
    """Validation metrics: ``nme68`` (%, 2D, normalised by sqrt(w*h) of the GT landmark box), pose MAE
    (degrees, crop frame), ``yaw_only_mae`` where only a yaw is known (the pose head's) and ``fit_yaw_only_mae``
    (the pose the runtime reports: the rotation fitted to the predicted landmarks), and the loss."""
    model.eval()
    mc = model.config
    nmes, bins, human, pose_err, yaw_err, fit_yaw_err, losses = [], [], [], [], [], [], []
    for batch in loader:
        batch = _to(batch, device)
        out = model(batch["image"])
        losses.append(float(compute_losses(out, batch, mc.input_size, mc.depth_bins, mc.z_range, cfg.loss)["total"]))
        lm = out["landmarks"].float().cpu().numpy()
        gt = batch["landmarks"].cpu().numpy()
        sel = batch["has_landmarks"].cpu().numpy() > 0
        if sel.any():
            nmes.extend(nme(lm[sel], gt[sel]).tolist())
            bins.extend(yaw_bins(matrix_to_euler(batch["rotation"].cpu().numpy()[sel])).tolist())
        human.extend(_human_point_nmes(lm, batch))
        psel = batch["has_pose"].cpu().numpy() > 0
        if psel.any():
            e = matrix_to_euler(out["rotation"].float().cpu().numpy()[psel]) - matrix_to_euler(
                batch["rotation"].cpu().numpy()[psel])
            pose_err.append(np.abs(e))
        ysel = batch["has_yaw"].cpu().numpy() > 0
        if ysel.any():
            y = yaw_of(out["rotation"].float()).cpu().numpy()[ysel]
            yaw_err.extend(np.abs(y - batch["yaw_gt"].cpu().numpy()[ysel]).tolist())
            fit = matrix_to_euler(rotation_from_landmarks(lm[ysel]))[:, 0]  # crop frame = image frame here
            fit_yaw_err.extend(np.abs(fit - batch["yaw_gt"].cpu().numpy()[ysel]).tolist())
    m: dict[str, float] = {"val_loss": float(np.mean(losses)) if losses else math.nan}
    if nmes:
        m["nme68"] = float(np.mean(nmes))
        per_bin = [float(np.mean(np.asarray(nmes)[np.asarray(bins) == b])) for b in range(3) if b in bins]
        m["nme68_balanced"] = float(np.mean(per_bin))  # the mean over the |yaw| bins present (as the benchmark)
    if human:
        m["nme_human"] = float(np.mean(human))
    if pose_err:
        pe = np.concatenate(pose_err).mean(0)
        m.update(yaw_mae=float(pe[0]), pitch_mae=float(pe[1]), roll_mae=float(pe[2]), pose_mae=float(pe.mean()))
    if yaw_err:
        m["yaw_only_mae"] = float(np.mean(yaw_err))
        m["fit_yaw_only_mae"] = float(np.mean(fit_yaw_err))
    return m


def _human_point_nmes(lm: np.ndarray, batch: dict) -> list[float]:
    """NME (%) of the predicted iBUG partners of the visible human AFLW-21 points, normalised like ``nme68`` by
    sqrt(w*h) of the teacher's 68-point box: the human-point measure next to the teacher-point one."""
    vis = batch["pts21_visible"].cpu().numpy()[:, list(AFLW_IDX)] > 0
    keep = vis.any(axis=1) & (batch["has_landmarks"].cpu().numpy() > 0)
    if not keep.any():
        return []
    gt = np.where(vis[..., None], batch["pts21"].cpu().numpy()[:, list(AFLW_IDX)], np.nan)[keep]
    teacher = batch["landmarks"].cpu().numpy()[keep, :, :2]
    span = teacher.max(axis=1) - teacher.min(axis=1)
    return nme(lm[keep][:, list(IBUG_IDX)], gt, norm=np.sqrt(span[:, 0] * span[:, 1])).tolist()


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _plot(path: Path, history: dict) -> None:
    matplotlib.use("Agg")
    fig = mpl_figure.Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    steps = history["steps"]
    if steps:
        ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss")
        ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.legend()
    ep = history["epochs"]
    for key in ("nme68", "pose_mae", "yaw_only_mae", "fit_yaw_only_mae"):
        xs = [r["epoch"] for r in ep if key in r]
        if xs:
            ax2.plot(xs, [r[key] for r in ep if key in r], marker="o", label=key)
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


@dataclass(frozen=True)
class _Run:
    """What a training run is made of once set up (the parts that do not change from step to step)."""

    cfg: TrainConfig
    dist: _Dist
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper (see _distribute)
    pre: PreprocessConfig
    train_samples: MixedSamples
    dataset: AlignmentDataset
    val_loader: object | None
    count: int  # samples per epoch
    steps_per_epoch: int
    total_steps: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    meta_extra: dict
    ema: WeightEma | None = None  # [optim] ema_decay > 0: the average that is validated and saved as best.pt

    @property
    def scored(self) -> torch.nn.Module:
        """The weights that are validated and selected: the EMA when there is one."""
        return self.ema.model if self.ema is not None else self.model

    @property
    def out_dir(self) -> Path:
        return Path(self.cfg.run.out_dir)


@dataclass
class _State:
    """Where a run stands (saved in ``last.pt`` for an exact resume)."""

    epoch: int = 0
    step: int = 0
    pos: int = 0  # steps done inside the current epoch
    history: dict = field(default_factory=lambda: {"steps": [], "epochs": []})
    best: float = math.inf
    bad_steps_in_a_row: int = 0  # skipped for a non-finite loss or gradient (_count_bad_step; not saved)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _model_on(cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """The configured network on ``device``, its 2D convolutions in :func:`_memory_format`."""
    model = build_from_config(cfg).to(device)
    for mod in model.modules():  # 2D convolutions only: Conv3d weights (the hourglass family) stay as they are
        if isinstance(mod, torch.nn.Conv2d):
            mod.to(memory_format=_memory_format(device))
    return model


def _data(cfg: TrainConfig, model: torch.nn.Module, registry: Mapping[str, Loader], d: _Dist):
    """The training samples and dataset, the validation loader, samples and steps per epoch."""
    mc = model.config
    pre = PreprocessConfig(input_size=mc.input_size)
    train_samples = MixedSamples(cfg.data.sources, registry)
    dense_mirror = mirror_permutation(model.dense_template.cpu().numpy()) if mc.num_dense else None
    ds = AlignmentDataset(train_samples, pre, cfg.augment, mc.num_dense, cfg.run.seed, dense_mirror)
    val_loader = None
    if cfg.data.val:
        val_ds = AlignmentDataset(MixedSamples(cfg.data.val, registry), pre, AugmentConfig.off(), mc.num_dense,
                                  cfg.run.seed, dense_mirror)
        val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.data.val_batch_size, shuffle=False,
                                                 num_workers=cfg.data.num_workers, collate_fn=collate)
    count = cfg.data.samples_per_epoch or len(train_samples)
    bs = cfg.data.batch_size
    steps_per_epoch = (count // d.world_size) // bs
    if steps_per_epoch < 1:
        raise ConfigError(f"an epoch of {count} samples over {d.world_size} process(es) is less than one "
                          f"batch of {bs}; lower [data] batch_size or raise samples_per_epoch")
    return pre, train_samples, ds, val_loader, count, steps_per_epoch


def _freeze_all_but(model: torch.nn.Module, prefixes: tuple[str, ...]) -> None:
    """``[optim] train_only``: only parameters whose names start with one of ``prefixes`` are trained."""
    if not prefixes:
        return
    names = [n for n, _ in model.named_parameters()]
    unmatched = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unmatched:
        tops = sorted({n.split(".")[0] for n in names})
        raise ConfigError(f"[optim] train_only {unmatched} names no parameter of this network; its parameters "
                          f"start with {tops}")
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(prefixes))


def _hold_frozen_statistics(model: torch.nn.Module, train_only: tuple[str, ...]) -> None:
    """Under ``[optim] train_only``, batch-norm layers with no trained parameter keep their running statistics
    (eval mode) while training. Without it nothing is frozen, a batch norm without affine parameters included."""
    if not train_only:
        return
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(
                p.requires_grad for p in m.parameters()):
            m.eval()


def _set_up(cfg: TrainConfig, registry: Mapping[str, Loader] | None) -> _Run:
    """Distributed set-up, device, seeds, model, data, optimizer, LR schedule and AMP scaler."""
    dist_info = _init_distributed()
    device = _device(cfg, dist_info)
    _seed_everything(cfg.run.seed)
    model = _model_on(cfg, device)
    pre, train_samples, ds, val_loader, count, steps_per_epoch = _data(cfg, model, registry or default_registry(),
                                                                       dist_info)
    total_steps = cfg.optim.epochs * steps_per_epoch
    _freeze_all_but(model, cfg.optim.train_only)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                                  weight_decay=cfg.optim.weight_decay,
                                  foreach=True)  # one kernel per step, not one per tensor (CPU default: per tensor)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.optim.warmup_steps, total_steps))
    use_amp = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    meta_extra = {"training_data": [f"{s.kind}:{s.path or f'count={s.count},seed={s.seed}'}:{s.split}"
                                    for s in cfg.data.sources]}
    ema = WeightEma(model, cfg.optim.ema_decay) if cfg.optim.ema_decay > 0 else None
    return _Run(cfg, dist_info, device, model, model, pre, train_samples, ds, val_loader, count, steps_per_epoch,
                total_steps, optimizer, scheduler, scaler, use_amp, meta_extra, ema)


def _distribute(run: _Run) -> _Run:
    """Wrap the model in DistributedDataParallel when there are several processes (after any resume)."""
    if run.dist.world_size <= 1:
        return run
    net = torch.nn.parallel.DistributedDataParallel(
        run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    return replace(run, net=net)


def _resume(run: _Run) -> _State:
    """Model, optimizer, scheduler, scaler and RNG states and the position from ``last.pt``."""
    last_path = run.out_dir / "last.pt"
    if not last_path.is_file():
        raise ConfigError(f"{last_path}: nothing to resume from; run without --resume to start, or point "
                          "--out-dir at the run to continue")
    ckpt = read_checkpoint(last_path)
    if "resume" not in ckpt:
        raise ConfigError(f"{last_path}: has no resume state (a weights-only export?); cannot --resume from it")
    r = check_resume_state(ckpt, last_path)  # complete before anything is loaded
    try:
        run.model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ConfigError(f"{last_path}: was trained with another [model] section than this config ({e}); "
                          "resume with the config of that run") from None
    try:
        run.optimizer.load_state_dict(r["optimizer"])
        run.scheduler.load_state_dict(r["scheduler"])
        run.scaler.load_state_dict(r["scaler"])
        set_rng_state(r["rng"])
        if run.ema is not None:
            if "ema" not in r:
                raise KeyError("ema (this config averages the weights; the run it resumes did not)")
            run.ema.load_state_dict(r["ema"])
        return _State(epoch=int(r["epoch"]), step=int(r["step"]), pos=int(r["position"]), history=r["history"],
                      best=float(r["best"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{last_path}: its resume state does not fit this run ({e}); start a new run "
                              "without --resume (or with another --out-dir)") from None


def _init_weights(run: _Run) -> None:
    """Start a new run from the weights of ``[run] init_from`` (a second schedule on a trained model).

    A ``last.pt`` of a run that averaged its weights (``[optim] ema_decay``) starts from that average (the weights
    its validation scored), not from the raw weights of its last step."""
    path = Path(run.cfg.run.init_from)
    ckpt = read_checkpoint(path)
    state = ckpt["state_dict"]
    ema = ckpt["resume"].get("ema") if isinstance(ckpt.get("resume"), dict) else None
    if ema is not None:
        if not isinstance(ema, dict) or not isinstance(ema.get("weights"), dict):
            raise CheckpointError(f"{path}: its weight average (resume.ema) has no weights; the file is damaged "
                                  "or from another tool: start from its run's best.pt instead")
        state = ema["weights"]
        if run.dist.main:
            print(f"fa-train: [run] init_from {path}: starting from its weight average (the weights its "
                  "validation scored), not its last step's raw weights", file=sys.stderr, flush=True)
    if isinstance(run.model, PoseFusedMobileNet):  # a mean-pooled start for learnt pooling (pool_maps)
        state = adapt_state_dict(run.model, state)
    try:
        run.model.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"{path}: [run] init_from was trained with another [model] section than this config "
                          f"({str(e).splitlines()[0]}); use the [model] section of that run") from None
    if run.ema is not None:
        run.ema.reset(run.model)


def _save_last(run: _Run, state: _State) -> None:
    if not run.dist.main:
        return
    resume = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
              "scaler": run.scaler.state_dict(), "rng": rng_state(), "epoch": state.epoch, "step": state.step,
              "position": state.pos, "history": state.history, "best": state.best}
    if run.ema is not None:
        resume["ema"] = run.ema.state_dict()
    save_checkpoint(run.out_dir / "last.pt", run.model,
                    metrics=state.history["epochs"][-1] if state.history["epochs"] else {},
                    train_config=run.cfg.to_dict(), preprocess=run.pre, resume=resume, metadata_extra=run.meta_extra)


class _Board:
    """TensorBoard scalars (when ``[run] tensorboard`` and this is the main process); otherwise nothing."""

    def __init__(self, run: _Run) -> None:
        self.writer = None
        if run.cfg.run.tensorboard and run.dist.main:
            self.writer = tensorboard.SummaryWriter(str(run.out_dir / "tensorboard"))

    def scalars(self, prefix: str, row: dict, at: int, skip: tuple[str, ...], flush: bool = False) -> None:
        if self.writer is None:
            return
        for k, v in row.items():
            if k not in skip:
                self.writer.add_scalar(f"{prefix}/{k}", v, at)
        if flush:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _train_step(run: _Run, state: _State, batch: dict) -> tuple[float, float, dict]:
    """One optimisation step with teacher forcing and AMP; returns the loss, p(teacher forcing), the terms."""
    cfg, mc, device = run.cfg, run.model.config, run.device
    batch = _to(batch, device)
    p_tf = teacher_forcing_probability(state.step, run.total_steps, cfg.teacher_forcing.p0,
                                       cfg.teacher_forcing.anneal_fraction)
    g = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + state.step)
    force = (torch.rand(batch["image"].shape[0], generator=g) < p_tf).to(device) & (batch["has_pose"] > 0)
    with torch.autocast(device.type, enabled=run.use_amp):
        out = run.net(batch["image"], rotation=batch["rotation"], force_mask=force)
    losses = compute_losses(out, batch, mc.input_size, mc.depth_bins, mc.z_range, cfg.loss)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(losses["total"]).backward()
    run.scaler.unscale_(run.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(),
                                          cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
    loss = float(losses["total"].detach())
    finite = math.isfinite(loss) and bool(torch.isfinite(norm))
    if finite:
        run.scaler.step(run.optimizer)  # (an enabled scaler still skips a step whose gradient overflowed)
    run.scaler.update()
    # the schedule keeps its length whether or not the step was taken (torch warns when it was not)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
        run.scheduler.step()
    if finite and run.ema is not None:
        run.ema.update(run.model)
    _count_bad_step(run, state, loss, finite)
    return loss, p_tf, losses


#: this many steps in a row with a non-finite loss or gradient end the run: it has diverged
MAX_BAD_STEPS_IN_A_ROW = 20
#: with float16 AMP, a gradient that overflows even below this loss scale is a bad step, not an ordinary overflow
MIN_AMP_SCALE = 1.0


def _count_bad_step(run: _Run, state: _State, loss: float, finite: bool) -> None:
    """A step whose loss or gradient is not finite (``finite`` False) leaves the weights (and the EMA) as they
    were: one bad batch (a half-precision overflow, a degenerate SVD gradient) must not turn every weight into NaN.
    Many bad steps in a row mean the run has diverged: stop with a clear error (``last.pt`` holds the last good
    state).

    With float16 AMP (CUDA, the scaler enabled) an overflowing gradient is the scaler's normal signal: the step is
    skipped and the scale halved, and a few such steps in a row are routine. There a skipped step counts as bad
    only when no scale can help: its loss itself is not finite, or the gradient still overflows with the scale
    below 1 (``MIN_AMP_SCALE``; it starts at 65,536 and halves on every overflow)."""
    if finite:
        state.bad_steps_in_a_row = 0
        return
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler.is_enabled() and math.isfinite(loss) and run.scaler.get_scale() >= MIN_AMP_SCALE:
        return  # an ordinary overflow: the scaler has lowered its scale and the next step tries again
    state.bad_steps_in_a_row += 1
    if run.dist.main:
        print(f"fa-train: step {state.step + 1}: non-finite loss or gradient; step skipped, weights unchanged",
              file=sys.stderr, flush=True)
    if state.bad_steps_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
        raise TrainingDiverged(f"{state.bad_steps_in_a_row} steps in a row had a non-finite loss or gradient "
                               f"(last at step {state.step + 1}): the run has diverged; lower [optim] lr, or "
                               f"resume from {run.out_dir / 'last.pt'} (the last good state)")


def _epoch_loader(run: _Run, state: _State):
    cfg, bs = run.cfg, run.cfg.data.batch_size
    run.dataset.set_epoch(state.epoch)
    idx = epoch_indices(run.train_samples.weights, run.count, cfg.run.seed, state.epoch, run.dist.rank,
                        run.dist.world_size, len(cfg.data.sources) > 1)
    return torch.utils.data.DataLoader(
        run.dataset, batch_size=bs, sampler=ResumableSampler(idx, state.pos * bs), num_workers=cfg.data.num_workers,
        collate_fn=collate, drop_last=True, generator=torch.Generator().manual_seed(cfg.run.seed),
        pin_memory=run.device.type == "cuda")


def _train_epoch(run: _Run, state: _State, board: _Board, progress: bool) -> tuple[bool, float]:
    """The rest of the current epoch; returns (stopped by stop_after_steps, mean training loss)."""
    cfg = run.cfg
    loader = _epoch_loader(run, state)
    run.net.train()
    _hold_frozen_statistics(run.model, cfg.optim.train_only)
    bar = tqdm(total=run.steps_per_epoch, initial=state.pos, desc=f"epoch {state.epoch + 1}/{cfg.optim.epochs}",
               disable=not (progress and run.dist.main), leave=False)
    run_loss, run_n, stopped = 0.0, 0, False
    for batch in loader:
        if state.pos >= run.steps_per_epoch:
            break
        loss, p_tf, losses = _train_step(run, state, batch)
        state.step += 1
        state.pos += 1
        if math.isfinite(loss):
            run_loss += loss
            run_n += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if run.dist.main and state.step % max(cfg.run.log_every, 1) == 0:
            row = {"step": state.step, "epoch": state.epoch, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
                   "teacher_forcing": p_tf}
            row.update({k: float(v.detach()) for k, v in losses.items() if k != "total"})
            state.history["steps"].append(row)
            board.scalars("train", row, state.step, skip=("step", "epoch"))
        if cfg.run.checkpoint_every and state.step % cfg.run.checkpoint_every == 0:
            _save_last(run, state)
        if cfg.run.stop_after_steps and state.step >= cfg.run.stop_after_steps:
            stopped = True
            break
    bar.close()
    return stopped, run_loss / max(run_n, 1)


def _end_epoch(run: _Run, state: _State, board: _Board, train_loss: float) -> None:
    """Validate, keep the best checkpoint, save ``last.pt``, write the CSV logs, the curve and the scalars."""
    metrics = {"epoch": state.epoch + 1, "step": state.step, "train_loss": train_loss,
               "lr": run.scheduler.get_last_lr()[0]}
    if run.val_loader is not None:
        metrics.update(evaluate(run.scored, run.val_loader, run.device, run.cfg))
    state.epoch += 1
    state.pos = 0
    if not run.dist.main:
        return
    state.history["epochs"].append(metrics)
    select = run.cfg.run.select_metric
    key = select if select in metrics else ("val_loss" if "val_loss" in metrics else "train_loss")
    if metrics[key] < state.best:
        state.best = float(metrics[key])
        save_checkpoint(run.out_dir / "best.pt", run.scored, metrics=metrics, train_config=run.cfg.to_dict(),
                        preprocess=run.pre, metadata_extra=run.meta_extra)
    _save_last(run, state)
    _write_csv(run.out_dir / "epochs.csv", state.history["epochs"])
    _write_csv(run.out_dir / "steps.csv", state.history["steps"])
    _plot(run.out_dir / "curve.png", state.history)
    board.scalars("epoch", metrics, state.epoch, skip=("epoch", "step"), flush=True)


def _shut_down(run: _Run) -> None:
    if run.dist.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def train(cfg: TrainConfig, resume: bool = False, registry: Mapping[str, Loader] | None = None,
          progress: bool = True) -> TrainResult:
    """Train (or resume) as configured; writes ``last.pt``, ``best.pt``, logs and a curve to ``run.out_dir``."""
    run = _set_up(cfg, registry)
    if not resume and cfg.run.init_from:
        _init_weights(run)
    state = _resume(run) if resume else _State()
    run = _distribute(run)
    board = _Board(run)
    stopped = False
    while state.epoch < cfg.optim.epochs and not stopped:
        stopped, train_loss = _train_epoch(run, state, board, progress)
        if stopped:
            _save_last(run, state)
            break
        _end_epoch(run, state, board, train_loss)
    board.close()
    _shut_down(run)
    return TrainResult(out_dir=run.out_dir, step=state.step, epochs_done=state.epoch, stopped_early=stopped,
                       history=state.history, best_metric=state.best)
