"""A tiny test model (TinyAligner) with the real model's output contract, for the export tests.

TinyAligner is a test fixture, not the fa3d network: a few convolutions, a soft-argmax, a 6D -> rotation
head and a dense head, small enough to export and run in well under a second. The tests that need the
real network use ``fa3d.training.build_model("edge")`` when it is importable. Kept out of conftest.py so that
test modules can import it by a unique name.
"""

from __future__ import annotations

import torch

from fa3d.runtime.metadata import ArtifactMetadata
from fa3d.runtime.preprocess import PreprocessConfig

TINY_SIZE = 32
TINY_DENSE = 10


class TinyAligner(torch.nn.Module):
    """Test fixture with the output dict of fa3d models: landmarks (B,68,3), rotation (B,3,3), dense, confidence."""

    def __init__(self, size: int = TINY_SIZE, num_dense: int = TINY_DENSE) -> None:
        super().__init__()
        self.input_size = size
        self.num_dense = num_dense
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 68, 3, padding=1))
        self.depth = torch.nn.Linear(8, 68)
        self.pose = torch.nn.Linear(68, 6)
        self.dense = torch.nn.Linear(68 * 3, num_dense * 3)
        self.conf = torch.nn.Linear(68, 1)
        self.register_buffer("grid", torch.linspace(0, size - 1, size // 2))

    def forward(self, x: "torch.Tensor") -> dict:
        # constant reshape targets only (-1 for the batch): TensorRT-safe graphs have no Shape ops
        h = self.stem(x)  # (B, 68, S/2, S/2)
        n = self.input_size // 2
        prob = torch.softmax(h.reshape(-1, 68, n * n), dim=-1).reshape(-1, 68, n, n)
        px = (prob.sum(dim=2) * self.grid).sum(dim=-1)
        py = (prob.sum(dim=3) * self.grid).sum(dim=-1)
        pooled = h.mean(dim=(2, 3))
        z = self.depth(torch.nn.functional.relu(self.stem[0](x)).mean(dim=(2, 3)))
        lm = torch.stack([px, py, z], dim=-1)
        d6 = self.pose(pooled)
        a1, a2 = d6[:, :3], d6[:, 3:]
        b1 = a1 / torch.sqrt((a1 * a1).sum(dim=-1, keepdim=True) + 1e-8)
        a2 = a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1
        b2 = a2 / torch.sqrt((a2 * a2).sum(dim=-1, keepdim=True) + 1e-8)
        b3 = torch.cross(b1, b2, dim=-1)
        rot = torch.stack([b1, b2, b3], dim=-1)
        dense = self.dense(lm.reshape(-1, 68 * 3)).reshape(-1, self.num_dense, 3)
        return {"landmarks": lm, "rotation": rot, "dense": dense,
                "confidence": torch.sigmoid(self.conf(pooled))}


def tiny_metadata(size: int = TINY_SIZE, num_dense: int = TINY_DENSE) -> ArtifactMetadata:
    return ArtifactMetadata(format="checkpoint", preprocess=PreprocessConfig(input_size=size),
                            num_dense=num_dense, model={"preset": "tiny-test-fixture"})
