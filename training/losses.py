"""Training losses of the pose-fused network.

Every term takes per-sample masks for missing labels: a sample without a label contributes nothing to
that term (it is skipped, never zero-filled), and a term with no labelled sample in the batch is 0 with
no gradient. Coordinates are crop pixels; coordinate terms work on crop-normalised units (divided by S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from fa3d.runtime.schema import AFLW21_TO_IBUG68
from fa3d.runtime.schema import mean_shape as runtime_mean_shape

#: AFLW-21 indices and their iBUG-68 partners, as index tensors' sources
AFLW_IDX = tuple(AFLW21_TO_IBUG68.keys())
IBUG_IDX = tuple(AFLW21_TO_IBUG68.values())


@dataclass(frozen=True)
class LossWeights:
    heatmap: float = 1.0
    coords: float = 1.0
    # the 8 AFLW human points that map onto the 68 (a mean over 8 points, where ``coords`` averages 68 x 3
    # coordinates: per coordinate this weight pulls about 12 times harder than the same ``coords`` weight)
    aflw21: float = 0.5
    yaw: float = 0.2
    pose: float = 0.5
    dense: float = 0.5
    confidence: float = 0.1
    # the pose the runtime reports (the rotation fitted to the predicted 68 points, fa3d.runtime.pose): a
    # geodesic loss against the labelled rotation and a yaw loss against the human yaw; 0 = not computed
    fit_pose: float = 0.0
    fit_yaw: float = 0.0
    heatmap_sigma: float = 1.0  # Gaussian sigma in heatmap cells (x, y) and depth bins (z)
    wing_w: float = 0.05  # wing loss, in crop-normalised units
    wing_eps: float = 0.01
    # the share of the dense loss's gradient that reaches the 68 points through the template warp (the dense
    # points are the warp of the 68 + a learnt residual): 1 = all (v1-v4), 0 = none, so that the dense labels'
    # own point definitions (MediaPipe's) cannot pull the 68 points off the teacher's; the residual then learns
    # the whole difference. Not a loss weight: changes gradients only, never the exported network.
    dense_landmark_grad: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.dense_landmark_grad <= 1.0:
            raise ValueError(f"dense_landmark_grad must be in [0, 1], got {self.dense_landmark_grad}")


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over samples with weight > 0; 0 (no gradient) when no sample counts."""
    w = weights.to(values.dtype)
    total = w.sum()
    if float(total) <= 0:
        return values.sum() * 0.0
    return (values * w).sum() / total


def wing(x: torch.Tensor, w: float, eps: float) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) of absolute errors ``x``."""
    c = w - w * math.log(1 + w / eps)
    return torch.where(x < w, w * torch.log1p(x / eps), x - c)


def heatmap_targets(landmarks: torch.Tensor, input_size: int, size: int, bins: int, z_range: float,
                    sigma: float) -> torch.Tensor:
    """3D Gaussian volumes (B, D, H, W) of all 68 crop-frame landmarks (B, 68, 3), clamped to 1.

    x, y map to heatmap cells (stride S / H), z (centred crop pixels) to depth bins over
    ``[-z_range * S / 2, z_range * S / 2]``.
    """
    stride = input_size / size
    gx = (landmarks[..., 0] + 0.5) / stride - 0.5
    gy = (landmarks[..., 1] + 0.5) / stride - 0.5
    gz = (landmarks[..., 2] / (z_range * input_size) + 0.5) * bins - 0.5
    ax = torch.arange(size, device=landmarks.device, dtype=landmarks.dtype)
    az = torch.arange(bins, device=landmarks.device, dtype=landmarks.dtype)
    ex = torch.exp(-((ax[None, None] - gx[..., None]) ** 2) / (2 * sigma ** 2))  # B, K, W
    ey = torch.exp(-((ax[None, None] - gy[..., None]) ** 2) / (2 * sigma ** 2))  # B, K, H
    ez = torch.exp(-((az[None, None] - gz[..., None]) ** 2) / (2 * sigma ** 2))  # B, K, D
    return torch.einsum("bkd,bkh,bkw->bdhw", ez, ey, ex).clamp(max=1.0)


def geodesic(r1: torch.Tensor, r2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Angles (B,) in radians between rotations (B, 3, 3)."""
    tr = (r1 * r2).sum(dim=(1, 2))
    return torch.acos(((tr - 1.0) / 2.0).clamp(-1.0 + eps, 1.0 - eps))


def yaw_of(r: torch.Tensor) -> torch.Tensor:
    """Yaw (B,) in degrees of rotations (B, 3, 3) in the package convention (yaw = asin(-R[0, 2]))."""
    return torch.rad2deg(torch.asin((-r[:, 0, 2]).clamp(-1.0, 1.0)))


def fitted_rotation(landmarks: torch.Tensor, model_shape: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`fa3d.runtime.pose.rotation_from_landmarks`: the rotations (B, 3, 3) of the
    least-squares similarities from ``model_shape`` (68, 3, model frame) to crop landmarks (B, 68, 3), in
    float64 (the SVD's gradient is sensitive to rounding)."""
    b = landmarks.double() * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64, device=landmarks.device)
    a = model_shape.double()
    h = (b - b.mean(dim=1, keepdim=True)).transpose(1, 2) @ (a - a.mean(dim=0))
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(u @ vt))
    ones = torch.ones_like(d)
    return (u @ torch.diag_embed(torch.stack([ones, ones, d], dim=-1)) @ vt).to(landmarks.dtype)


def rotate_in_plane(r: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
    """Torch twin of :func:`fa3d.runtime.pose.in_plane_rotation`: ``Rz_view(a) @ R``."""
    a = torch.deg2rad(angle_deg.to(r.dtype))
    c, s = torch.cos(a), torch.sin(a)
    z, o = torch.zeros_like(a), torch.ones_like(a)
    rz = torch.stack([torch.stack([c, -s, z], -1), torch.stack([s, c, z], -1), torch.stack([z, z, o], -1)], -2)
    return rz @ r


def _fit_losses(lm_pred: torch.Tensor, batch: dict, mean_shape: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """``fit_pose`` / ``fit_yaw``: the rotation fitted to the predicted landmarks against the labels. Fitted on
    labelled faces with finite predictions only: a degenerate point set (e.g. a background crop's) would make
    the SVD's gradient NaN, a non-finite one the SVD itself raise."""
    pose_w = batch["has_pose"].float() * batch["pose_weight"].float()
    yaw_w = batch["has_yaw"].float()
    sel = ((pose_w > 0) | (yaw_w > 0)) & (batch["is_face"] > 0)
    # a non-finite prediction makes the SVD raise; the step is then skipped by the trainer (fa3d.training.train)
    sel = sel & torch.isfinite(lm_pred.detach()).all(dim=2).all(dim=1)
    if not bool(sel.any()):
        zero = lm_pred.sum() * 0.0
        return {"fit_pose": zero, "fit_yaw": zero}
    shape = torch.from_numpy(runtime_mean_shape().copy()) if mean_shape is None else mean_shape
    r_fit = fitted_rotation(lm_pred[sel], shape.to(lm_pred.device))
    fit_yaw = yaw_of(rotate_in_plane(r_fit, -batch["angle"].float()[sel]))
    return {"fit_pose": masked_mean(geodesic(r_fit, batch["rotation"].float()[sel]), pose_w[sel]),
            "fit_yaw": masked_mean((fit_yaw - batch["yaw_gt"].float()[sel]).abs() / 90.0, yaw_w[sel])}


def compute_losses(out: dict, batch: dict, input_size: int, bins: int, z_range: float,
                   weights: LossWeights, mean_shape: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted ``total``. ``batch`` holds the targets and masks made by
    :func:`fa3d.training.augment.collate` (crop frame); ``mean_shape`` (68, 3): the ``fit_*`` terms' model shape
    (default: the runtime's, as the runtime fits)."""
    s = float(input_size)
    lm_pred = out["landmarks"].float()
    face = batch["is_face"].float()
    losses: dict[str, torch.Tensor] = {}

    # 68-point 3D coordinates and heatmaps
    has_lm = batch["has_landmarks"].float() * batch["landmarks_weight"].float()
    gt = batch["landmarks"].float()
    err = (lm_pred - gt).abs() / s
    losses["coords"] = masked_mean(wing(err, weights.wing_w, weights.wing_eps).mean(dim=(1, 2)), has_lm)
    hm_terms = []
    if "heatmaps" in out and float(has_lm.sum()) > 0:
        size = out["heatmaps"][0].shape[-1]
        sel = has_lm > 0
        target = heatmap_targets(gt[sel], input_size, size, bins, z_range, weights.heatmap_sigma)
        for hm in out["heatmaps"]:
            per = ((hm[sel].float() - target) ** 2).mean(dim=(1, 2, 3))
            hm_terms.append(masked_mean(per, has_lm[sel]))
    losses["heatmap"] = torch.stack(hm_terms).sum() if hm_terms else lm_pred.sum() * 0.0

    # real AFLW 2D points where visible (mapped to iBUG indices)
    pts21 = batch["pts21"].float()
    vis = batch["pts21_visible"].float()[:, list(AFLW_IDX)]  # B, 8
    pred2 = lm_pred[:, list(IBUG_IDX), :2]
    gt2 = pts21[:, list(AFLW_IDX)]
    e2 = wing((pred2 - gt2).abs() / s, weights.wing_w, weights.wing_eps).mean(dim=2)  # B, 8
    nvis = vis.sum(dim=1)
    per21 = (e2 * vis).sum(dim=1) / nvis.clamp(min=1)
    losses["aflw21"] = masked_mean(per21, (nvis > 0).float() * face)

    # pose: geodesic on full rotations, yaw-only where only a yaw is known (in the image frame)
    r_pred = out["rotation"].float()
    losses["pose"] = masked_mean(geodesic(r_pred, batch["rotation"].float()),
                                 batch["has_pose"].float() * batch["pose_weight"].float())
    r_img = rotate_in_plane(r_pred, -batch["angle"].float())
    yaw_err = (yaw_of(r_img) - batch["yaw_gt"].float()).abs() / 90.0
    losses["yaw"] = masked_mean(yaw_err, batch["has_yaw"].float())
    if weights.fit_pose > 0 or weights.fit_yaw > 0:
        losses.update(_fit_losses(lm_pred, batch, mean_shape))

    # dense distillation
    if out["dense"].shape[1] and batch["dense"].shape[1] == out["dense"].shape[1]:
        de = (out["dense"].float() - batch["dense"].float()).abs() / s
        losses["dense"] = masked_mean(de.mean(dim=(1, 2)), batch["has_dense"].float() * batch["dense_weight"].float())
    else:
        losses["dense"] = lm_pred.sum() * 0.0

    # face confidence: positives = faces, negatives = background / far-shifted crops
    conf = out["confidence"].float().reshape(-1).clamp(1e-6, 1 - 1e-6)
    losses["confidence"] = F.binary_cross_entropy(conf, face)

    total = sum(getattr(weights, k) * v for k, v in losses.items())
    losses["total"] = total
    return losses


def teacher_forcing_probability(step: int, total_steps: int, p0: float, anneal_fraction: float = 1.0) -> float:
    """Cosine annealing of the probability of feeding the ground-truth rotation: ``p0`` at step 0, 0 after
    ``anneal_fraction * total_steps`` steps."""
    end = max(anneal_fraction * total_steps, 1.0)
    t = min(step / end, 1.0)
    return float(p0 * 0.5 * (1.0 + math.cos(math.pi * t)))
