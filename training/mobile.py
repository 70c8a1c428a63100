"""The `edge` network: the method's ideas (So & Han, arXiv 2308.13327) on a mobile backbone.

Why a second architecture: the first `edge` preset (two narrow hourglasses) needs 268 M MACs and 650 ONNX
nodes and ran 8.7x slower than 3DDFA_V2's MobileNet-V1 x0.5 on one CPU thread. This one keeps what the paper
contributes and drops what is expensive on CPUs, Jetson GPUs and TensorRT:

- a CoordConv stem (constant coordinate channels, folded into one Add in ONNX);
- an inverted-residual backbone (MobileNet-V2 blocks: 1x1 expand, 3x3 depthwise, 1x1 project, ReLU only);
- a pose head on the early features (6D -> rotation, Gram-Schmidt), whose rotation is fused into the
  squeeze-and-excitation of every later block: ``sigmoid(Linear([squeeze(x), rot9]))`` rescales the
  expanded channels (pose fusion, as in the paper's blocks; MobileNet-V3 places SE the same way);
- a light 3D heatmap: one 1x1 convolution of the stride-8 features into ``depth_bins`` channels, the volume
  ``depth_bins x H/8 x W/8`` holding all 68 landmarks (supervised with Gaussian targets like the paper's);
- the dual-dimensional regressor in its cheapest form: a 2D branch (the rest of the backbone, pooled) and a
  3D branch (a strided convolution and a pose-fused excitation over the heatmap volume, pooled), concatenated,
  one hidden layer, linear -> 68 x 3 offsets from the mean shape;
- the dense head (template warped by the keypoints + a learnt residual) and the face confidence, exactly as in
  :mod:`fa3d.training.model`.

Operators: Conv, BatchNormalization (folded at export), Relu, Add, Mul, Sigmoid, ReduceMean, Gemm/MatMul,
Concat, Reshape, Slice, Sqrt, Div: all in the TensorRT 8.5-11 safe set at opset 17, and every Conv/Gemm input
quantisable with Q/DQ (no op between a Conv and its ReLU that blocks fusion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .blocks import CoordConv2d, PoseSE
from .heads import add_output_heads, assemble_outputs, dataclass_from_dict, pose_for_fusion

#: one stage of the backbone: (expansion, out channels, repeats, first stride)
Stage = tuple[int, int, int, int]


@dataclass(frozen=True)
class MobileConfig:
    """Every size of the mobile network. Stored in checkpoints (``to_dict``/``from_dict``)."""

    preset: str
    input_size: int
    stem_width: int
    stages: tuple[Stage, ...]
    pose_after: int  # the pose head reads the output of this stage; later stages are pose-fused
    heat_after: int  # the 3D heatmap is made from the output of this stage (stride 8)
    depth_bins: int
    reg3d_width: int
    hidden: int
    pose_width: int
    se_reduction: int = 4
    num_dense: int = 468
    fuse_pose: bool = True
    z_range: float = 1.0  # the depth bins cover z in [-z_range * S / 2, z_range * S / 2] crop pixels
    # how each regressor branch's last map becomes a vector: 0 = its global mean (v1-v4: where on the map a
    # feature sits is lost); k >= 1 = k learnt spatial weightings of each channel (a depthwise convolution
    # over the whole map, MobileFaceNet's global depthwise convolution), the first initialised to the mean
    pool_maps: int = 0
    # the (pose-fused) squeeze-and-excitation on every block of the stages after the pose head (v1-v4), or only on
    # each such stage's first block: an excitation is 8 small ONNX nodes; together about a fifth of the CPU latency
    se_first_only: bool = False
    arch: str = "mobile"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(tuple(int(v) for v in s) for s in self.stages))
        if self.arch != "mobile":
            raise ValueError(f"MobileConfig.arch must be 'mobile', got {self.arch!r}")
        if not self.stages or any(len(s) != 4 or min(s) < 1 for s in self.stages):
            raise ValueError("stages must be a non-empty list of [expansion, channels, repeats, stride], all >= 1")
        if not 0 <= self.pose_after < len(self.stages) - 1:
            raise ValueError(f"pose_after must index a stage before the last, got {self.pose_after}")
        if not self.pose_after <= self.heat_after < len(self.stages):
            raise ValueError(f"heat_after must be a stage from pose_after ({self.pose_after}) on, "
                             f"got {self.heat_after}")
        for f in ("input_size", "stem_width", "depth_bins", "reg3d_width", "hidden", "pose_width", "se_reduction"):
            if getattr(self, f) < 1:
                raise ValueError(f"model config {f} must be >= 1, got {getattr(self, f)}")
        if self.pool_maps < 0:
            raise ValueError(f"pool_maps must be >= 0, got {self.pool_maps}")
        for f in ("fuse_pose", "se_first_only"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"model config {f} must be true or false, got {getattr(self, f)!r}")
        if self.input_size % 16:
            raise ValueError(f"input_size must be a multiple of 16, got {self.input_size}")
        if self.num_dense < 0:
            raise ValueError(f"num_dense must be >= 0, got {self.num_dense}")

    @property
    def heatmap_size(self) -> int:
        stride = 2 * int(np.prod([s[3] for s in self.stages[:self.heat_after + 1]]))
        return self.input_size // stride

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MobileConfig":
        return dataclass_from_dict(cls, d)


class InvertedResidual(nn.Module):
    """1x1 expand - 3x3 depthwise - (pose-fused) SE - 1x1 project, residual when shapes agree.

    ``se`` is None for the stages before the pose head (no rotation exists yet there); with ``fuse_pose``
    False the excitation does not see the rotation (the paper's ablation).
    """

    def __init__(self, cin: int, cout: int, expansion: int, stride: int, se: bool, fuse_pose: bool,
                 reduction: int) -> None:
        super().__init__()
        mid = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True)]
        layers += [nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
                   nn.ReLU(inplace=True)]
        self.expand_dw = nn.Sequential(*layers)
        self.se = PoseSE(mid, fuse_pose, reduction) if se else None
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor, rot9: torch.Tensor | None) -> torch.Tensor:
        y = self.expand_dw(x)
        if self.se is not None:
            y = self.se(y, rot9)
        y = self.project(y)
        return x + y if self.residual else y


def _map_sizes(c: MobileConfig) -> tuple[int, int]:
    """The side of the 2D branch's last map and of the 3D branch's map (every stride-s convolution here pads
    to ``ceil(side / s)``)."""
    side = -(-c.input_size // 2)  # the stem
    heat = side
    for i, spec in enumerate(c.stages):
        side = -(-side // spec[3])
        if i == c.heat_after:
            heat = side
    return side, -(-heat // 2)


class SpatialPool(nn.Module):
    """``maps`` learnt weightings of each channel over a ``side`` x ``side`` map (MobileFaceNet's global
    depthwise convolution, with several maps per channel), as a broadcast Mul and a ReduceSum (a grouped
    convolution with a channel multiplier, and a batched MatMul for some ``maps``, ran 5x slower than the whole
    network on ONNX Runtime's CPU). Output feature ``j * maps + m`` is map ``m`` of channel ``j``; map 0 starts
    as the mean, the others as small random weightings."""

    def __init__(self, channels: int, maps: int, side: int) -> None:
        super().__init__()
        w = torch.randn(channels, maps, side * side) / side ** 2
        w[:, 0] = 1.0 / side ** 2
        self.weight = nn.Parameter(w)
        self.shape_in = (-1, channels, 1, side * side)  # constant shapes: no Shape node in the ONNX graph
        self.shape_out = (-1, channels * maps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(self.shape_in) * self.weight).sum(dim=3).reshape(self.shape_out)


def _stage(cin: int, spec: Stage, fused: bool, fuse_pose: bool, reduction: int,
           se_first_only: bool) -> nn.ModuleList:
    t, c, n, s = spec
    blocks = nn.ModuleList()
    for i in range(n):
        se = fused and (i == 0 or not se_first_only)
        blocks.append(InvertedResidual(cin, c, t, s if i == 0 else 1, se, fuse_pose, reduction))
        cin = c
    return blocks


class PoseFusedMobileNet(nn.Module):
    """See the module docstring. Same call and outputs as :class:`fa3d.training.model.PoseFusedAlignmentNet`:
    ``forward(x, rotation=None, force_mask=None) -> dict`` (``heatmaps`` and ``rotation_6d`` in training)."""

    def __init__(self, config: MobileConfig, dense_template: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = c = config
        self.input_size = c.input_size
        self.num_dense = c.num_dense
        self.stem_conv = CoordConv2d(3, c.stem_width, 3, 2, c.input_size)
        self.stem_bn = nn.BatchNorm2d(c.stem_width)
        self.stages = nn.ModuleList()
        cin = c.stem_width
        widths = []
        for i, spec in enumerate(c.stages):
            self.stages.append(_stage(cin, spec, i > c.pose_after, c.fuse_pose, c.se_reduction, c.se_first_only))
            cin = spec[1]
            widths.append(cin)
        # pose head on the early features
        pw = c.pose_width
        self.pose_conv = nn.Sequential(nn.Conv2d(widths[c.pose_after], pw, 1, bias=False), nn.BatchNorm2d(pw),
                                       nn.ReLU(inplace=True))
        self.pose_fc = nn.Sequential(nn.Linear(pw, pw), nn.ReLU(inplace=True), nn.Linear(pw, 6))
        nn.init.zeros_(self.pose_fc[2].weight)
        with torch.no_grad():
            self.pose_fc[2].bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))
        # 3D heatmap and its branch of the dual regressor
        self.heat = nn.Conv2d(widths[c.heat_after], c.depth_bins, 1)
        rw = c.reg3d_width
        self.reg3d = nn.Sequential(nn.Conv2d(c.depth_bins, rw, 3, 2, 1, bias=False), nn.BatchNorm2d(rw),
                                   nn.ReLU(inplace=True))
        self.reg3d_se = PoseSE(rw, c.fuse_pose, c.se_reduction)
        self.pool2d = self.pool3d = None
        k = max(c.pool_maps, 1)
        if c.pool_maps:
            side2d, side3d = _map_sizes(c)
            self.pool2d = SpatialPool(widths[-1], k, side2d)
            self.pool3d = SpatialPool(rw, k, side3d)
        self.fc = nn.Sequential(nn.Linear((widths[-1] + rw) * k, c.hidden), nn.ReLU(inplace=True))
        add_output_heads(self, c, dense_template)

    def forward(self, x: torch.Tensor, rotation: torch.Tensor | None = None,
                force_mask: torch.Tensor | None = None) -> dict:
        c = self.config
        f = F.relu(self.stem_bn(self.stem_conv(x)))
        rot9 = r6 = r_pred = heat = None
        for i, stage in enumerate(self.stages):
            for blk in stage:
                f = blk(f, rot9)
            if i == c.pose_after:
                r6 = self.pose_fc(self.pose_conv(f).mean(dim=(2, 3))).float()
                r_pred, rot9 = pose_for_fusion(r6, rotation, force_mask, self.training)
            if i == c.heat_after:
                heat = self.heat(f)
        g = self.reg3d_se(self.reg3d(heat), rot9)
        if self.pool2d is None:
            p2d, p3d = f.mean(dim=(2, 3)), g.mean(dim=(2, 3))
        else:
            p2d, p3d = self.pool2d(f), self.pool3d(g)
        hidden = self.fc(torch.cat([p2d, p3d], dim=1))
        out = assemble_outputs(self, hidden, r_pred)
        if self.training:
            out["heatmaps"] = [heat]
            out["rotation_6d"] = r6
        return out


def adapt_state_dict(model: PoseFusedMobileNet, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` of a network whose branches were pooled by the global mean (``pool_maps = 0``), made into a
    state of ``model`` (``pool_maps = k``) that computes the same outputs: ``model``'s own initial spatial
    weightings (map 0 is the mean), the first layer of the regressor reading map 0 of each channel as the old
    one read the channel's mean, the other maps at weight 0. Any other state is returned unchanged."""
    k = model.config.pool_maps
    if not k or "pool2d.weight" in state or "fc.0.weight" not in state:
        return state
    old = state["fc.0.weight"]
    hidden, width = model.fc[0].weight.shape
    if old.shape != (hidden, width // k):
        return state  # not the mean-pooled form of this network: load_state_dict names the mismatch
    new = torch.zeros(hidden, width, dtype=old.dtype)
    new[:, ::k] = old
    out = dict(state)
    out["fc.0.weight"] = new
    out["pool2d.weight"] = model.pool2d.weight.detach().clone()
    out["pool3d.weight"] = model.pool3d.weight.detach().clone()
    return out
