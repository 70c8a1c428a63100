"""The pose-fused 3D face alignment network (So & Han, arXiv 2308.13327): the hourglass family, the presets of
both families and the factory (the mobile family is in :mod:`fa3d.training.mobile`).

Structure (after the authors' released code; README, "Training"): CoordConv stem -> pose head (6D -> rotation)
-> stacked pose-fused hourglasses emitting 3D heatmap volumes (channels = depth bins; intermediate supervision) -> dual
regressor (heatmap attention, 2D branch on the feature maps, 3D branch of Conv3d + pose-fused SE-Conv3D
on the heatmap volume, pooled, concatenated, linear -> 68x3) -> dense head (template warped by the
keypoints + residual, see :mod:`fa3d.training.dense_template`) and a face confidence.

Outputs are in crop pixels of the ``input_size`` crop made by :mod:`fa3d.runtime.preprocess`:
x right, y down, z relative depth in pixels (larger = nearer) centred on the 68-point mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .blocks import CoordConv2d, FusedConv3dBlock, FusedConvBlock, Hourglass
from .heads import (add_output_heads, assemble_outputs, base_shape_crop,  # noqa: F401 (base_shape_crop: API)
                    dataclass_from_dict, pose_for_fusion)
from .mobile import MobileConfig, PoseFusedMobileNet


@dataclass(frozen=True)
class ModelConfig:
    """Every size of the network. Stored in checkpoints (``to_dict``/``from_dict``)."""

    preset: str
    input_size: int
    stem_width: int  # channels of the first CoordConv
    channels: int  # hourglass width
    num_stacks: int
    hg_depth: int
    depth_bins: int  # channels of the 3D heatmap volume
    regressor_hourglass: bool  # one more pose-fused hourglass in the regressor (the paper's PCNet)
    reg2d_width: int
    reg2d_blocks: int  # each halves the resolution
    reg3d_width: int
    reg3d_blocks: int
    hidden: int
    pose_width: int
    num_dense: int = 468
    fuse_pose: bool = True
    z_range: float = 1.0  # the depth bins cover z in [-z_range * S / 2, z_range * S / 2] crop pixels
    arch: str = "hourglass"

    def __post_init__(self) -> None:
        if self.arch != "hourglass":
            raise ValueError(f"ModelConfig.arch must be 'hourglass', got {self.arch!r}")
        if self.input_size % 4 or (self.input_size // 4) % (2 ** self.hg_depth):
            raise ValueError(f"input_size {self.input_size} / 4 must be divisible by 2**hg_depth "
                             f"({2 ** self.hg_depth})")
        for f in ("channels", "num_stacks", "hg_depth", "depth_bins", "hidden", "pose_width", "stem_width"):
            if getattr(self, f) < 1:
                raise ValueError(f"model config {f} must be >= 1, got {getattr(self, f)}")
        if self.channels % 4:
            raise ValueError(f"channels must be a multiple of 4, got {self.channels}")
        if self.num_dense < 0:
            raise ValueError(f"num_dense must be >= 0, got {self.num_dense}")

    @property
    def heatmap_size(self) -> int:
        return self.input_size // 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return dataclass_from_dict(cls, d)


PRESETS: dict[str, "ModelConfig | MobileConfig"] = {
    # faithful sizes: 256 input, 4 hourglasses of depth 4 at 256 channels, a 64-bin volume
    "paper": ModelConfig(preset="paper", input_size=256, stem_width=64, channels=256, num_stacks=4, hg_depth=4,
                         depth_bins=64, regressor_hourglass=True, reg2d_width=256, reg2d_blocks=2,
                         reg3d_width=16, reg3d_blocks=2, hidden=512, pose_width=128),
    # real time on CPUs, Jetson GPUs and TensorRT: the method on an inverted-residual backbone
    # (fa3d.training.mobile; candidates and their measured latency ratios in the README)
    "edge": MobileConfig(preset="edge", input_size=112, stem_width=16,
                         stages=((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 48, 2, 1), (4, 96, 2, 2),
                                 (4, 128, 2, 2)),
                         pose_after=2, heat_after=3, depth_bins=8, reg3d_width=32, hidden=256, pose_width=64),
    # the first edge model (2 narrow hourglasses, 16 depth bins): 268 M MACs, 8.7x the reference latency
    "edge_hg": ModelConfig(preset="edge_hg", input_size=128, stem_width=16, channels=64, num_stacks=2, hg_depth=3,
                           depth_bins=16, regressor_hourglass=False, reg2d_width=96, reg2d_blocks=2,
                           reg3d_width=8, reg3d_blocks=1, hidden=256, pose_width=64),
    # for tests and CI smoke runs only
    "tiny": ModelConfig(preset="tiny", input_size=64, stem_width=8, channels=16, num_stacks=1, hg_depth=2,
                        depth_bins=8, regressor_hourglass=False, reg2d_width=16, reg2d_blocks=1,
                        reg3d_width=4, reg3d_blocks=1, hidden=32, pose_width=16, num_dense=32),
    "tiny_mobile": MobileConfig(preset="tiny_mobile", input_size=64, stem_width=8,
                                stages=((1, 8, 1, 1), (2, 12, 1, 2), (2, 16, 1, 2), (2, 16, 1, 1), (2, 24, 1, 2)),
                                pose_after=1, heat_after=3, depth_bins=4, reg3d_width=8, hidden=32, pose_width=16,
                                num_dense=32),
}


def config_from_dict(d: dict) -> "ModelConfig | MobileConfig":
    """A model config from its ``to_dict`` form (checkpoints); ``arch`` picks the family (hourglass when
    absent: checkpoints written before the mobile family existed)."""
    arch = d.get("arch", "hourglass")
    if arch == "mobile":
        return MobileConfig.from_dict(d)
    if arch == "hourglass":
        return ModelConfig.from_dict(d)
    raise ValueError(f"unknown model architecture {arch!r} (known: hourglass, mobile)")


def network_for(config: "ModelConfig | MobileConfig", dense_template: np.ndarray | None = None) -> nn.Module:
    """The network of a config, of whichever family."""
    if isinstance(config, MobileConfig):
        return PoseFusedMobileNet(config, dense_template)
    return PoseFusedAlignmentNet(config, dense_template)


class PoseFusedAlignmentNet(nn.Module):
    """See the module docstring. ``forward(x, rotation=None, force_mask=None) -> dict``.

    ``rotation`` (B, 3, 3) feeds the fused blocks instead of the predicted rotation (teacher forcing);
    with ``force_mask`` (B,) bool only the masked samples get it and the others their own (detached)
    prediction. In eval mode the dict has exactly :data:`fa3d.runtime.metadata.OUTPUT_NAMES`; in training
    mode it also has ``heatmaps`` (list of (B, D, H, W), one per stack) and ``rotation_6d`` (B, 6).
    """

    def __init__(self, config: ModelConfig, dense_template: np.ndarray | None = None):
        super().__init__()
        self.config = c = config
        self.input_size = c.input_size
        self.num_dense = c.num_dense
        fp = c.fuse_pose
        h = c.heatmap_size
        # --- stem (not fused: the pose is estimated from its output)
        self.stem_conv = CoordConv2d(3, c.stem_width, 7, 2, c.input_size)
        self.stem_bn = nn.BatchNorm2d(c.stem_width)
        self.stem_b1 = FusedConvBlock(c.stem_width, c.stem_width * 2, False)
        self.stem_b2 = FusedConvBlock(c.stem_width * 2, c.stem_width * 2, False)
        self.stem_b3 = FusedConvBlock(c.stem_width * 2, c.channels, False)
        # --- pose head
        pw = c.pose_width
        self.pose_convs = nn.Sequential(
            nn.Conv2d(c.channels, pw, 3, 2, 1, bias=False), nn.BatchNorm2d(pw), nn.ReLU(inplace=True),
            nn.Conv2d(pw, pw, 3, 2, 1, bias=False), nn.BatchNorm2d(pw), nn.ReLU(inplace=True))
        self.pose_fc = nn.Sequential(nn.Linear(pw, pw), nn.ReLU(inplace=True), nn.Linear(pw, 6))
        nn.init.zeros_(self.pose_fc[2].weight)
        with torch.no_grad():
            self.pose_fc[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        # --- stacked hourglasses
        self.entrances = nn.ModuleList()
        self.entrance_bns = nn.ModuleList()
        self.hourglasses = nn.ModuleList()
        self.posts = nn.ModuleList()
        self.lls = nn.ModuleList()
        self.heats = nn.ModuleList()
        self.merge_ll = nn.ModuleList()
        self.merge_heat = nn.ModuleList()
        for i in range(c.num_stacks):
            self.entrances.append(CoordConv2d(c.channels, c.channels, 1, 1, h))
            self.entrance_bns.append(nn.BatchNorm2d(c.channels))
            self.hourglasses.append(Hourglass(c.hg_depth, c.channels, fp))
            self.posts.append(FusedConvBlock(c.channels, c.channels, fp))
            self.lls.append(nn.Sequential(nn.Conv2d(c.channels, c.channels, 1, bias=False),
                                          nn.BatchNorm2d(c.channels), nn.ReLU(inplace=True)))
            self.heats.append(nn.Conv2d(c.channels, c.depth_bins, 1))
            if i < c.num_stacks - 1:
                self.merge_ll.append(nn.Conv2d(c.channels, c.channels, 1))
                self.merge_heat.append(nn.Conv2d(c.depth_bins, c.channels, 1))
        # --- dual regressor
        self.attention = nn.Conv2d(c.depth_bins, 1, 1)
        self.reg_hourglass = Hourglass(max(c.hg_depth - 1, 1), c.channels, fp) if c.regressor_hourglass else None
        self.reg2d = nn.ModuleList()
        cin = c.channels
        for _ in range(c.reg2d_blocks):
            self.reg2d.append(FusedConvBlock(cin, c.reg2d_width, fp))
            cin = c.reg2d_width
        self.reg3d_in = nn.Sequential(nn.Conv3d(1, c.reg3d_width, 3, 2, 1, bias=False),
                                      nn.BatchNorm3d(c.reg3d_width), nn.ReLU(inplace=True))
        self.reg3d = nn.ModuleList(FusedConv3dBlock(c.reg3d_width, fp) for _ in range(c.reg3d_blocks))
        self.fc = nn.Sequential(nn.Linear(cin + c.reg3d_width, c.hidden), nn.ReLU(inplace=True))
        add_output_heads(self, c, dense_template)

    def forward(self, x: torch.Tensor, rotation: torch.Tensor | None = None,
                force_mask: torch.Tensor | None = None) -> dict:
        c = self.config
        f = F.relu(self.stem_bn(self.stem_conv(x)))
        f = self.stem_b1(f, None)  # the stem is not fused: the pose is estimated from its output
        f = F.max_pool2d(f, 2, 2)
        f = self.stem_b2(f, None)
        f = self.stem_b3(f, None)
        # pose
        p = self.pose_convs(f).mean(dim=(2, 3))
        r6 = self.pose_fc(p).float()
        r_pred, rot9 = pose_for_fusion(r6, rotation, force_mask, self.training)
        # stacked hourglasses
        heatmaps = []
        ll = heat = f
        for i in range(c.num_stacks):
            y = F.relu(self.entrance_bns[i](self.entrances[i](f)))
            y = self.hourglasses[i](y, rot9)
            y = self.posts[i](y, rot9)
            ll = self.lls[i](y)
            heat = self.heats[i](ll)
            heatmaps.append(heat)
            if i < c.num_stacks - 1:
                f = f + self.merge_ll[i](ll) + self.merge_heat[i](heat)
        # dual regressor
        g = ll * (1.0 + torch.sigmoid(self.attention(heat)))
        if self.reg_hourglass is not None:
            g = self.reg_hourglass(g, rot9)
        for blk in self.reg2d:
            g = blk(F.max_pool2d(g, 2, 2), rot9)
        p2d = g.mean(dim=(2, 3))
        v = self.reg3d_in(heat.unsqueeze(1))
        for blk in self.reg3d:
            v = blk(v, rot9)
            v = F.max_pool3d(v, 2, 2)
        p3d = v.mean(dim=(2, 3, 4))
        hidden = self.fc(torch.cat([p2d, p3d], dim=1))
        out = assemble_outputs(self, hidden, r_pred)
        if self.training:
            out["heatmaps"] = heatmaps
            out["rotation_6d"] = r6
        return out


def build_model(preset: str, fuse_pose: bool = True, num_dense: int | None = None,
                dense_template: np.ndarray | None = None, **overrides) -> nn.Module:
    """The network of a preset (``paper``, ``edge``, ``edge_hg``, or ``tiny``/``tiny_mobile`` for tests),
    optionally with changed sizes.

    ``overrides`` are fields of the preset's config (:class:`ModelConfig` or :class:`MobileConfig`), e.g.
    ``depth_bins=32``. ``dense_template`` (N, 3) is in the mean-shape model frame; without it a deterministic
    default template is used.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    changes = dict(overrides, fuse_pose=bool(fuse_pose))
    if dense_template is not None:
        changes["num_dense"] = int(np.shape(dense_template)[0])
    if num_dense is not None:
        if dense_template is not None and num_dense != changes["num_dense"]:
            raise ValueError(f"num_dense={num_dense} contradicts the template's {changes['num_dense']} points")
        changes["num_dense"] = int(num_dense)
    return network_for(replace(PRESETS[preset], **changes), dense_template)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
