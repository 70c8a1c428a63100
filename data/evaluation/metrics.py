"""Face alignment metrics as the literature reports them (numpy only; no torch).

* **NME** (2D): per image, the mean over the evaluated points of the Euclidean error in x, y divided by
  ``sqrt(w * h)`` of the ground-truth landmark box (the tight box of the GT points used), in percent.
  This is the 3DDFA protocol for AFLW2000-3D (68 points) and AFLW (visible points only).
* **Yaw bins** by the *ground-truth* yaw: ``0-30`` = |yaw| <= 30, ``30-60`` = 30 < |yaw| <= 60,
  ``60-90`` = |yaw| > 60. ``balanced`` = mean of the three bin means (over non-empty bins), ``all`` =
  plain mean over images.
* **Pose MAE** (degrees): mean absolute difference of yaw, pitch and roll, and their mean, over the images
  whose three ground-truth angles all lie within +-99 degrees (the 3DDFA / FSA-Net filter on
  AFLW2000-3D). Angles are compared as numbers (no wrap-around), as the papers do.
* **Failures**: an image without a prediction (no face found, a missing entry in a predictions file) is a
  failure. Failures are *excluded from every mean* and *counted and reported* (``failures``), never
  dropped silently; a CED curve counts them as never reaching any threshold (it ends below 100%).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.lazy import lazy_import

matplotlib = lazy_import("matplotlib", extra="train")  # only plot_ced needs it
plt = lazy_import("matplotlib.pyplot", extra="train")

YAW_BINS: tuple[tuple[str, float, float], ...] = (("0-30", -1.0, 30.0), ("30-60", 30.0, 60.0),
                                                   ("60-90", 60.0, np.inf))
POSE_FILTER_DEG = 99.0


def gt_box_size(gt: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of the tight box of each image's GT points (B, N, >=2), NaN points ignored."""
    g = np.asarray(gt, dtype=np.float64)[..., :2]
    if g.ndim != 3:
        raise ValueError(f"expected ground truth (B, N, 2|3), got shape {g.shape}")
    w = np.nanmax(g[..., 0], axis=1) - np.nanmin(g[..., 0], axis=1)
    h = np.nanmax(g[..., 1], axis=1) - np.nanmin(g[..., 1], axis=1)
    return np.sqrt(w * h)


def nme(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
        norm: np.ndarray | None = None) -> np.ndarray:
    """Per-image 2D NME in percent (B,).

    ``pred`` and ``gt`` are (B, N, 2|3); only x, y are used. ``mask`` (B, N) selects the evaluated points
    (default: every point whose GT is finite). ``norm`` (B,) overrides the normaliser (default: ``sqrt(w*h)``
    of the GT box of *all finite* GT points, i.e. the visible ones for AFLW).
    """
    p = np.asarray(pred, dtype=np.float64)[..., :2]
    g = np.asarray(gt, dtype=np.float64)[..., :2]
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"pred and gt must both be (B, N, 2|3), got {np.shape(pred)} and {np.shape(gt)}")
    finite = np.isfinite(g).all(-1)
    m = finite if mask is None else (np.asarray(mask, bool) & finite)
    if m.shape != g.shape[:2]:
        raise ValueError(f"mask must be (B, N) = {g.shape[:2]}, got {m.shape}")
    if (m.sum(1) == 0).any():
        raise ValueError("an image has no evaluated point (all masked or NaN)")
    d = gt_box_size(g) if norm is None else np.asarray(norm, dtype=np.float64)
    if (d <= 0).any() or not np.isfinite(d).all():
        raise ValueError("a ground-truth box has zero size: cannot normalise")
    err = np.linalg.norm(p - g, axis=-1)
    if not np.isfinite(err[m]).all():
        raise ValueError("predictions contain NaN or infinite values at evaluated points")
    return (np.where(m, err, 0.0).sum(1) / m.sum(1)) / d * 100.0


def yaw_bins(ypr: np.ndarray) -> np.ndarray:
    """The bin index of :data:`YAW_BINS` (0: 0-30, 1: 30-60, 2: 60-90 degrees of |yaw|) of each (yaw, pitch, roll)
    row; |yaw| beyond 90 counts as the last bin (for sampling; :func:`yaw_bin_means` leaves such images out)."""
    edges = [hi for _, _, hi in YAW_BINS[:-1]]
    return np.digitize(np.abs(np.asarray(ypr, np.float64)[:, 0]), edges, right=True).astype(np.int64)


def yaw_bin_means(values: np.ndarray, gt_yaw: np.ndarray) -> dict[str, float | None]:
    """Per-bin means, ``balanced`` and ``all`` of per-image values binned by |GT yaw| (degrees).

    A bin with no image is ``None`` and left out of ``balanced``.
    """
    v = np.asarray(values, dtype=np.float64)
    a = np.abs(np.asarray(gt_yaw, dtype=np.float64))
    if v.shape != a.shape or v.ndim != 1:
        raise ValueError(f"values and gt_yaw must be (B,), got {v.shape} and {a.shape}")
    out: dict[str, float | None] = {}
    for name, lo, hi in YAW_BINS:
        sel = (a > lo) & (a <= hi)
        out[name] = float(v[sel].mean()) if sel.any() else None
    present = [out[n] for n, _, _ in YAW_BINS if out[n] is not None]
    out["balanced"] = float(np.mean(present)) if present else None
    out["all"] = float(v.mean()) if v.size else None
    return out


def pose_filter(gt_ypr: np.ndarray, limit: float = POSE_FILTER_DEG) -> np.ndarray:
    """(B,) bool: all three GT angles within +-limit degrees."""
    g = np.asarray(gt_ypr, dtype=np.float64)
    return (np.abs(g) <= limit).all(-1)


def pose_mae(pred_ypr: np.ndarray, gt_ypr: np.ndarray, limit: float | None = POSE_FILTER_DEG,
             angles: tuple[str, ...] = ("yaw", "pitch", "roll")) -> dict[str, float | None]:
    """MAE per angle and their mean over the images passing :func:`pose_filter`.

    ``angles`` names the columns present; the others come back as ``None`` (e.g. AFLW has yaw only:
    pass (B, 1) arrays with ``angles=("yaw",)``).
    """
    p = np.asarray(pred_ypr, dtype=np.float64)
    g = np.asarray(gt_ypr, dtype=np.float64)
    if p.shape != g.shape or p.ndim != 2 or p.shape[1] != len(angles):
        raise ValueError(f"pred and gt must both be (B, {len(angles)}), got {p.shape} and {g.shape}")
    keep = pose_filter(g, limit) if limit is not None else np.ones(len(g), bool)
    out: dict[str, float | None] = {k: None for k in ("yaw", "pitch", "roll")}
    if not keep.any():
        out["mean"] = None
        return out
    err = np.abs(p[keep] - g[keep]).mean(0)
    for k, e in zip(angles, err):
        out[k] = float(e)
    out["mean"] = float(err.mean())
    return out


def ced_curve(errors: np.ndarray, failures: int = 0, max_error: float = 10.0,
              steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds (steps,) and the fraction of *all* images (failures
    included in the denominator) with error <= threshold."""
    e = np.sort(np.asarray(errors, dtype=np.float64))
    total = len(e) + int(failures)
    t = np.linspace(0.0, max_error, steps)
    frac = np.searchsorted(e, t, side="right") / max(total, 1)
    return t, frac


def plot_ced(curves: dict[str, tuple[np.ndarray, int]], path, max_error: float = 10.0,
             title: str = "CED") -> None:
    """Write a CED PNG; ``curves`` maps a label to (per-image NME, failures). Writes atomically."""
    matplotlib.use("Agg", force=False)  # before pyplot is loaded: no display needed
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for label, (errs, fails) in curves.items():
        t, f = ced_curve(errs, fails, max_error)
        auc = float(np.trapezoid(f, t) / max_error) if hasattr(np, "trapezoid") else float(np.trapz(f, t) / max_error)
        ax.plot(t, f * 100, label=f"{label} (AUC@{max_error:g}={auc:.3f})")
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("images (%)")
    ax.set_xlim(0, max_error)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``b - a`` over paired per-image errors and its bootstrap confidence interval.

    Images are resampled with replacement (the pairs stay together), so the interval covers the
    uncertainty from *which images* were evaluated, not from training (another seed may differ more).
    Returns (mean difference, low, high).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired errors must be two non-empty 1-D arrays of one length, got {a.shape} and {b.shape}")
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(n_boot):
        means[i] = d[rng.integers(0, len(d), len(d))].mean()
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(d.mean()), float(lo), float(hi)


@dataclass(frozen=True)
class EvalResult:
    """The result of one protocol; :meth:`to_json` gives exactly the keys ``nme2d``, ``pose_mae``,
    ``failures``. Fields a protocol does not measure are ``None``."""

    protocol: str
    num_images: int
    failures: int
    nme2d: dict | None
    pose_mae: dict | None
    per_image_nme: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    failed_names: tuple[str, ...] = ()
    scored_names: tuple[str, ...] = field(repr=False, default=())  # the image of each per_image_nme entry
    unscored: int = 0  # predicted, but no evaluable GT point (AFLW crop without a visible checked point)

    def to_json(self) -> dict:
        return {"nme2d": self.nme2d, "pose_mae": self.pose_mae, "failures": int(self.failures)}

    def table(self) -> str:
        def f(v):
            return "   -  " if v is None else f"{v:6.2f}"
        lines = [f"protocol {self.protocol}: {self.num_images} images, {self.failures} failures "
                 "(excluded from the means)" + (f", {self.unscored} without an evaluable GT point"
                                                 if self.unscored else "")]
        if self.nme2d is not None:
            keys = ["0-30", "30-60", "60-90", "balanced", "all"]
            lines.append("NME2D (%) " + " ".join(f"{k:>8}" for k in keys))
            lines.append("          " + " ".join(f"{f(self.nme2d[k]):>8}" for k in keys))
        if self.pose_mae is not None:
            keys = ["yaw", "pitch", "roll", "mean"]
            lines.append("pose MAE  " + " ".join(f"{k:>8}" for k in keys))
            lines.append("(deg)     " + " ".join(f"{f(self.pose_mae[k]):>8}" for k in keys))
        return "\n".join(lines)
