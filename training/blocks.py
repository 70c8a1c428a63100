"""Building blocks of the pose-fused alignment network (torch).

Every block that is "pose-fused" takes the feature map and a flattened head rotation ``rot9`` (B, 9);
its squeeze-and-excitation computes ``sigmoid(Linear([squeeze(x), rot9]))`` and rescales the channels.
With ``fuse_pose=False`` the rotation is left out of every excitation (``Linear(C/16 -> C)``).

All operators stay inside the TensorRT-safe set (fa3d.export.onnx_check) at ONNX opset 17: reshapes use
``-1`` for the batch (no Shape ops), CoordConv channels are a constant buffer whose convolution is added
by broadcasting (no Expand of a batch-dependent shape).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def coord_channels(size: int) -> torch.Tensor:
    """(1, 3, size, size): x and y in [-1, 1] and the radius sqrt(x^2 + y^2) / sqrt(2)."""
    t = torch.linspace(-1.0, 1.0, size)
    y, x = torch.meshgrid(t, t, indexing="ij")
    r = torch.sqrt(x * x + y * y) / (2.0 ** 0.5)
    return torch.stack([x, y, r])[None]


class CoordConv2d(nn.Module):
    """A convolution over ``[x, coords]`` written as ``conv_x(x) + conv_c(coords)``.

    Mathematically the same as concatenating the coordinate channels; the coordinate part does not
    depend on the input, so it exports as a constant-input Conv (or a folded constant) added by
    broadcasting, whatever the batch size.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, size: int, bias: bool = True):
        super().__init__()
        pad = kernel // 2
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=False)
        self.coord_conv = nn.Conv2d(3, out_ch, kernel, stride, pad, bias=bias)
        self.register_buffer("coords", coord_channels(size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.coord_conv(self.coords)


class PoseSE(nn.Module):
    """Squeeze-and-excitation whose excitation sees the rotation (pose fusion) when ``fuse_pose``."""

    def __init__(self, channels: int, fuse_pose: bool, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fuse_pose = fuse_pose
        self.channels = channels
        self.squeeze = nn.Linear(channels, hidden)
        self.excite = nn.Linear(hidden + (9 if fuse_pose else 0), channels)

    def gate(self, x: torch.Tensor, rot9: torch.Tensor | None) -> torch.Tensor:
        """The per-channel excitation (B, C) in (0, 1) that :meth:`forward` multiplies ``x`` by."""
        dims = (2, 3) if x.dim() == 4 else (2, 3, 4)
        s = F.relu(self.squeeze(x.mean(dim=dims)))
        if self.fuse_pose:
            if rot9 is None:
                raise ValueError("a pose-fused block needs the flattened rotation (B, 9)")
            s = torch.cat([s, rot9], dim=1)
        return torch.sigmoid(self.excite(s))

    def forward(self, x: torch.Tensor, rot9: torch.Tensor | None) -> torch.Tensor:
        shape = (-1, self.channels, 1, 1) if x.dim() == 4 else (-1, self.channels, 1, 1, 1)
        return x * self.gate(x, rot9).reshape(shape)


def _bn_relu_conv(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, 1, k // 2, bias=False))


class FusedConvBlock(nn.Module):
    """The hierarchical ConvBlock (BN-ReLU-conv3x3 at widths C/2, C/4, C/4, concatenated) with a pose-fused
    SE on the residual branch and a 1x1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, fuse_pose: bool):
        super().__init__()
        c2, c4 = cout // 2, cout // 4
        self.b1 = _bn_relu_conv(cin, c2)
        self.b2 = _bn_relu_conv(c2, c4)
        self.b3 = _bn_relu_conv(c4, cout - c2 - c4)
        self.se = PoseSE(cout, fuse_pose)
        self.shortcut = None if cin == cout else _bn_relu_conv(cin, cout, 1)

    def forward(self, x: torch.Tensor, rot9: torch.Tensor | None) -> torch.Tensor:
        o1 = self.b1(x)
        o2 = self.b2(o1)
        o3 = self.b3(o2)
        out = self.se(torch.cat([o1, o2, o3], dim=1), rot9)
        return out + (x if self.shortcut is None else self.shortcut(x))


class FusedConv3dBlock(nn.Module):
    """Conv3d-BN-ReLU twice with a pose-fused SE-Conv3D excitation and a residual connection."""

    def __init__(self, channels: int, fuse_pose: bool):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm3d(channels), nn.ReLU(inplace=True),
            nn.Conv3d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm3d(channels))
        self.se = PoseSE(channels, fuse_pose, reduction=4)

    def forward(self, x: torch.Tensor, rot9: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.se(self.body(x), rot9))


class Hourglass(nn.Module):
    """A recursive hourglass of pose-fused blocks (max-pool down, nearest up, skip added)."""

    def __init__(self, depth: int, channels: int, fuse_pose: bool):
        super().__init__()
        self.depth = depth
        self.up1 = FusedConvBlock(channels, channels, fuse_pose)
        self.low1 = FusedConvBlock(channels, channels, fuse_pose)
        self.low2 = (Hourglass(depth - 1, channels, fuse_pose) if depth > 1
                     else FusedConvBlock(channels, channels, fuse_pose))
        self.low3 = FusedConvBlock(channels, channels, fuse_pose)

    def forward(self, x: torch.Tensor, rot9: torch.Tensor) -> torch.Tensor:
        up1 = self.up1(x, rot9)
        low = self.low1(F.max_pool2d(x, 2, 2), rot9)
        low = self.low2(low, rot9)
        low = self.low3(low, rot9)
        return up1 + F.interpolate(low, scale_factor=2.0, mode="nearest")


def rotation_from_6d_torch(d6: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3) by Gram-Schmidt, the columns being ``b1, b2, b1 x b2``.

    The torch twin of :func:`fa3d.runtime.pose.rotation_from_6d` (same column convention), written with
    ReduceSum/Sqrt/Div/Slice only so that it exports to TensorRT-safe ONNX.
    """
    a1, a2 = d6[:, 0:3], d6[:, 3:6]
    b1 = a1 / torch.sqrt((a1 * a1).sum(dim=1, keepdim=True) + eps)
    a2 = a2 - (b1 * a2).sum(dim=1, keepdim=True) * b1
    b2 = a2 / torch.sqrt((a2 * a2).sum(dim=1, keepdim=True) + eps)
    x1, y1, z1 = b1[:, 0:1], b1[:, 1:2], b1[:, 2:3]
    x2, y2, z2 = b2[:, 0:1], b2[:, 1:2], b2[:, 2:3]
    b3 = torch.cat([y1 * z2 - z1 * y2, z1 * x2 - x1 * z2, x1 * y2 - y1 * x2], dim=1)
    return torch.stack([b1, b2, b3], dim=2)
