"""Output heads shared by every network family: 68 landmarks as offsets from the mean shape, the dense head
(knowledge distillation: template warped by the keypoints + a learnt residual) and the face confidence.

The attribute names (``coords``, ``confidence``, ``dense_residual``, buffers ``base_shape``,
``dense_template``, ``dense_weights``) are part of the checkpoint format: keep them.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch
from torch import nn

from fa3d.runtime.preprocess import DEFAULT_CROP_SCALE
from fa3d.runtime.schema import NUM_LANDMARKS, mean_shape

from .blocks import rotation_from_6d_torch
from .dense_template import default_template, tps_weights


def dataclass_from_dict(cls, d: dict):
    """``cls(**d)`` for a config dataclass of either network family, refusing keys it does not have."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}")
    return cls(**d)


def base_shape_crop(input_size: int, crop_scale: float = DEFAULT_CROP_SCALE) -> np.ndarray:
    """The mean shape (68, 3) as it sits in a crop of ``input_size`` made by the runtime's crop rule."""
    m = mean_shape().astype(np.float64) * np.array([1.0, -1.0, 1.0])  # model frame -> image axes
    extent = (m[:, :2].max(0) - m[:, :2].min(0)).max()
    scale = input_size / crop_scale / extent
    centre = (m[:, :2].max(0) + m[:, :2].min(0)) / 2
    out = m * scale
    out[:, :2] += (input_size - 1) / 2.0 - centre * scale
    out[:, 2] -= out[:, 2].mean()
    return out.astype(np.float32)


def pose_for_fusion(r6: torch.Tensor, rotation: torch.Tensor | None, force_mask: torch.Tensor | None,
                    training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted rotation (B, 3, 3) from the pose head's 6D output, and the flattened rotation (B, 9) the
    fused blocks receive: the prediction (detached in training), or ``rotation`` (teacher forcing) for all
    samples or, with ``force_mask`` (B,) bool, for the masked ones."""
    r_pred = rotation_from_6d_torch(r6.float())  # Gram-Schmidt in float32 even under autocast
    if rotation is None:
        r_used = r_pred.detach() if training else r_pred
    elif force_mask is None:
        r_used = rotation.to(r_pred.dtype)
    else:
        m = force_mask.reshape(-1, 1, 1).to(torch.bool)
        r_used = torch.where(m, rotation.to(r_pred.dtype), r_pred.detach())
    return r_pred, r_used.reshape(-1, 9)


def add_output_heads(net: nn.Module, config, dense_template: np.ndarray | None) -> None:
    """Give ``net`` its output layers from ``config.hidden`` features (``config``: input_size, hidden,
    num_dense); ``dense_template`` (N, 3) in the mean-shape model frame, or None for the default template."""
    net.coords = nn.Linear(config.hidden, NUM_LANDMARKS * 3)
    nn.init.normal_(net.coords.weight, std=1e-3)
    nn.init.zeros_(net.coords.bias)
    net.confidence = nn.Linear(config.hidden, 1)
    net.register_buffer("base_shape", torch.from_numpy(base_shape_crop(config.input_size)))
    # training only: the share of the dense loss's gradient that flows into the 68 points (LossWeights)
    net.dense_landmark_grad = 1.0
    if not config.num_dense:
        net.dense_residual = None
        return
    template = (default_template(config.num_dense) if dense_template is None
                else np.asarray(dense_template, np.float32))
    if template.shape != (config.num_dense, 3):
        raise ValueError(f"dense_template must be ({config.num_dense}, 3), got {template.shape}")
    net.register_buffer("dense_template", torch.from_numpy(template.copy()))
    net.register_buffer("dense_weights", torch.from_numpy(tps_weights(template)))
    net.dense_residual = nn.Linear(config.hidden, config.num_dense * 3)
    nn.init.zeros_(net.dense_residual.weight)
    nn.init.zeros_(net.dense_residual.bias)


def assemble_outputs(net: nn.Module, hidden: torch.Tensor, r_pred: torch.Tensor) -> dict:
    """Landmarks (mean shape + offsets, z centred), dense points and confidence from the hidden vector.

    ``net`` has ``base_shape``, ``coords``, ``confidence``, ``dense_residual`` (or None), ``dense_weights``,
    ``num_dense`` and ``input_size``."""
    s = float(net.input_size)
    lm = net.base_shape + net.coords(hidden).reshape(-1, NUM_LANDMARKS, 3) * (s / 2.0)
    lm_z = lm[:, :, 2:3]
    lm = torch.cat([lm[:, :, 0:2], lm_z - lm_z.mean(dim=1, keepdim=True)], dim=2)
    if net.dense_residual is not None:
        keypoints = lm
        if net.training and net.dense_landmark_grad != 1.0:  # same values, the gradient scaled
            keypoints = lm.detach() + net.dense_landmark_grad * (lm - lm.detach())
        dense = torch.matmul(net.dense_weights, keypoints)
        dense = dense + net.dense_residual(hidden).reshape(-1, net.num_dense, 3) * (s / 2.0)
    else:
        dense = lm[:, :0]
    return {"landmarks": lm, "rotation": r_pred, "dense": dense,
            "confidence": torch.sigmoid(net.confidence(hidden))}
