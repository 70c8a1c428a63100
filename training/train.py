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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fa3d.runtime.atomic import atomic_path, atomic_write_text
from fa3d.runtime.pose import matrix_to_euler
from fa3d.runtime.preprocess import PreprocessConfig

from .augment import AugmentConfig, collate
from .checkpoint import read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, TrainConfig
from .sources import AlignmentDataset, Loader, MixedSamples, ResumableSampler, default_registry, epoch_indices
from .dense_template import mirror_permutation
from .losses import compute_losses, teacher_forcing_probability, yaw_of
from fa3d.runtime.evaluation.metrics import nme
from .model import PoseFusedAlignmentNet, build_model


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
    import torch.distributed as dist

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


def build_from_config(cfg: TrainConfig) -> PoseFusedAlignmentNet:
    template = None
    if cfg.model.dense_template:
        p = Path(cfg.model.dense_template)
        try:
            template = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ConfigError(f"{p}: cannot read the dense template ({e}); it must be a (N, 3) .npy") from None
    return build_model(cfg.model.preset, fuse_pose=cfg.model.fuse_pose, num_dense=cfg.model.num_dense,
                       dense_template=template, **cfg.model.overrides)


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: PoseFusedAlignmentNet, loader, device: torch.device, cfg: TrainConfig) -> dict[str, float]:
    """Validation metrics: ``nme68`` (%, 2D, normalised by sqrt(w*h) of the GT landmark box), pose MAE
    (degrees, crop frame), ``yaw_mae`` where only a yaw is known, and the loss without heatmap terms."""
    model.eval()
    mc = model.config
    nmes, pose_err, yaw_err, losses = [], [], [], []
    for batch in loader:
        batch = _to(batch, device)
        out = model(batch["image"])
        losses.append(float(compute_losses(out, batch, mc.input_size, mc.depth_bins, mc.z_range, cfg.loss)["total"]))
        lm = out["landmarks"].float().cpu().numpy()
        gt = batch["landmarks"].cpu().numpy()
        sel = batch["has_landmarks"].cpu().numpy() > 0
        if sel.any():
            nmes.extend(nme(lm[sel], gt[sel]).tolist())
        psel = batch["has_pose"].cpu().numpy() > 0
        if psel.any():
            e = matrix_to_euler(out["rotation"].float().cpu().numpy()[psel]) - matrix_to_euler(
                batch["rotation"].cpu().numpy()[psel])
            pose_err.append(np.abs(e))
        ysel = batch["has_yaw"].cpu().numpy() > 0
        if ysel.any():
            y = yaw_of(out["rotation"].float()).cpu().numpy()[ysel]
            yaw_err.extend(np.abs(y - batch["yaw_gt"].cpu().numpy()[ysel]).tolist())
    m: dict[str, float] = {"val_loss": float(np.mean(losses)) if losses else math.nan}
    if nmes:
        m["nme68"] = float(np.mean(nmes))
    if pose_err:
        pe = np.concatenate(pose_err).mean(0)
        m.update(yaw_mae=float(pe[0]), pitch_mae=float(pe[1]), roll_mae=float(pe[2]), pose_mae=float(pe.mean()))
    if yaw_err:
        m["yaw_only_mae"] = float(np.mean(yaw_err))
    return m


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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    steps = history["steps"]
    if steps:
        ax1.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss")
        ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.legend()
    ep = history["epochs"]
    for key in ("nme68", "pose_mae", "yaw_only_mae"):
        xs = [r["epoch"] for r in ep if key in r]
        if xs:
            ax2.plot(xs, [r[key] for r in ep if key in r], marker="o", label=key)
    ax2.set_xlabel("epoch")
    ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)


def train(cfg: TrainConfig, resume: bool = False, registry: Mapping[str, Loader] | None = None,
          progress: bool = True) -> TrainResult:
    """Train (or resume) as configured; writes ``last.pt``, ``best.pt``, logs and a curve to ``run.out_dir``."""
    dist_info = _init_distributed()
    device = _device(cfg, dist_info)
    seed = cfg.run.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    out_dir = Path(cfg.run.out_dir)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"

    model = build_from_config(cfg).to(device)
    mc = model.config
    pre = PreprocessConfig(input_size=mc.input_size)
    registry = registry or default_registry()
    train_samples = MixedSamples(cfg.data.sources, registry)
    dense_mirror = mirror_permutation(model.dense_template.cpu().numpy()) if mc.num_dense else None
    ds = AlignmentDataset(train_samples, pre, cfg.augment, mc.num_dense, seed, dense_mirror)
    val_loader = None
    if cfg.data.val:
        val_ds = AlignmentDataset(MixedSamples(cfg.data.val, registry), pre, AugmentConfig.off(), mc.num_dense,
                                  seed, dense_mirror)
        val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.data.val_batch_size, shuffle=False,
                                                 num_workers=cfg.data.num_workers, collate_fn=collate)
    count = cfg.data.samples_per_epoch or len(train_samples)
    bs = cfg.data.batch_size
    steps_per_epoch = (count // dist_info.world_size) // bs
    if steps_per_epoch < 1:
        raise ConfigError(f"an epoch of {count} samples over {dist_info.world_size} process(es) is less than one "
                          f"batch of {bs}; lower [data] batch_size or raise samples_per_epoch")
    total_steps = cfg.optim.epochs * steps_per_epoch
    weighted = len(cfg.data.sources) > 1

    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.optim.warmup_steps, total_steps))
    use_amp = cfg.optim.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    epoch, step, pos = 0, 0, 0
    history: dict = {"steps": [], "epochs": []}
    best = math.inf
    if resume:
        if not last_path.is_file():
            raise ConfigError(f"{last_path}: nothing to resume from; run without --resume to start, or point "
                              "--out-dir at the run to continue")
        ckpt = read_checkpoint(last_path)
        if "resume" not in ckpt:
            raise ConfigError(f"{last_path}: has no resume state (a weights-only export?); cannot --resume from it")
        try:
            model.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:
            raise ConfigError(f"{last_path}: was trained with another [model] section than this config ({e}); "
                              "resume with the config of that run") from None
        r = ckpt["resume"]
        optimizer.load_state_dict(r["optimizer"])
        scheduler.load_state_dict(r["scheduler"])
        scaler.load_state_dict(r["scaler"])
        set_rng_state(r["rng"])
        epoch, step, pos = int(r["epoch"]), int(r["step"]), int(r["position"])
        history, best = r["history"], float(r["best"])

    net = model
    if dist_info.world_size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    writer = None
    if cfg.run.tensorboard and dist_info.main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tensorboard"))

    meta_extra = {"training_data": [f"{s.kind}:{s.path or f'count={s.count},seed={s.seed}'}:{s.split}"
                                    for s in cfg.data.sources]}

    def save_last() -> None:
        if not dist_info.main:
            return
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "rng": rng_state(), "epoch": epoch, "step": step,
                 "position": pos, "history": history, "best": best}
        save_checkpoint(last_path, model, metrics=history["epochs"][-1] if history["epochs"] else {},
                        train_config=cfg.to_dict(), preprocess=pre, resume=state, metadata_extra=meta_extra)

    from tqdm.auto import tqdm

    stopped = False
    while epoch < cfg.optim.epochs and not stopped:
        ds.set_epoch(epoch)
        idx = epoch_indices(train_samples.weights, count, seed, epoch, dist_info.rank, dist_info.world_size,
                            weighted)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=bs, sampler=ResumableSampler(idx, pos * bs), num_workers=cfg.data.num_workers,
            collate_fn=collate, drop_last=True, generator=torch.Generator().manual_seed(seed),
            pin_memory=device.type == "cuda")
        net.train()
        bar = tqdm(total=steps_per_epoch, initial=pos, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                   disable=not (progress and dist_info.main), leave=False)
        run_loss, run_n = 0.0, 0
        for batch in loader:
            if pos >= steps_per_epoch:
                break
            batch = _to(batch, device)
            p_tf = teacher_forcing_probability(step, total_steps, cfg.teacher_forcing.p0,
                                               cfg.teacher_forcing.anneal_fraction)
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            force = (torch.rand(batch["image"].shape[0], generator=g) < p_tf).to(device) & (batch["has_pose"] > 0)
            with torch.autocast(device.type, enabled=use_amp):
                out = net(batch["image"], rotation=batch["rotation"], force_mask=force)
            losses = compute_losses(out, batch, mc.input_size, mc.depth_bins, mc.z_range, cfg.loss)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(optimizer)
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            pos += 1
            loss = float(losses["total"].detach())
            run_loss += loss
            run_n += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if dist_info.main and step % max(cfg.run.log_every, 1) == 0:
                row = {"step": step, "epoch": epoch, "loss": loss, "lr": scheduler.get_last_lr()[0],
                       "teacher_forcing": p_tf}
                row.update({k: float(v.detach()) for k, v in losses.items() if k != "total"})
                history["steps"].append(row)
                if writer is not None:
                    for k, v in row.items():
                        if k not in ("step", "epoch"):
                            writer.add_scalar(f"train/{k}", v, step)
            if cfg.run.checkpoint_every and step % cfg.run.checkpoint_every == 0:
                save_last()
            if cfg.run.stop_after_steps and step >= cfg.run.stop_after_steps:
                stopped = True
                break
        bar.close()
        if stopped:
            save_last()
            break
        # end of epoch: validate, log, keep the best
        metrics = {"epoch": epoch + 1, "step": step, "train_loss": run_loss / max(run_n, 1),
                   "lr": scheduler.get_last_lr()[0]}
        if val_loader is not None:
            metrics.update(evaluate(model, val_loader, device, cfg))
        epoch += 1
        pos = 0
        if dist_info.main:
            history["epochs"].append(metrics)
            key = cfg.run.select_metric if cfg.run.select_metric in metrics else (
                "val_loss" if "val_loss" in metrics else "train_loss")
            if metrics[key] < best:
                best = float(metrics[key])
                save_checkpoint(best_path, model, metrics=metrics, train_config=cfg.to_dict(), preprocess=pre,
                                metadata_extra=meta_extra)
            save_last()
            _write_csv(out_dir / "epochs.csv", history["epochs"])
            _write_csv(out_dir / "steps.csv", history["steps"])
            _plot(out_dir / "curve.png", history)
            if writer is not None:
                for k, v in metrics.items():
                    if k not in ("epoch", "step"):
                        writer.add_scalar(f"epoch/{k}", v, epoch)
                writer.flush()
    if writer is not None:
        writer.close()
    if dist_info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(out_dir=out_dir, step=step, epochs_done=epoch, stopped_early=stopped, history=history,
                       best_metric=best)
