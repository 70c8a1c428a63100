"""A tiny FP32 face-model stand-in exported to ONNX opset 17 with its sidecar, for the calibration and INT8 tests.

It has the real interface (input ``input`` (B,3,S,S); outputs landmarks (B,68,3), rotation (B,3,3),
dense (B,N,3), confidence (B,1)) and Conv/BN/ReLU/Gemm layers, but random weights: it checks plumbing
and quantization mechanics, never accuracy.
"""

from __future__ import annotations

import warnings
from pathlib import Path

SIZE = 32
N_DENSE = 20


def _tiny_model():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8)
            self.c2, self.b2 = nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16)
            self.c3 = nn.Conv2d(16, 16, 3, 1, 1)
            self.fc = nn.Linear(16 * (SIZE // 4) ** 2, 64)
            self.lm, self.rot = nn.Linear(64, 68 * 3), nn.Linear(64, 6)
            self.dn, self.cf = nn.Linear(64, N_DENSE * 3), nn.Linear(64, 1)

        def forward(self, x):
            x = F.relu(self.b1(self.c1(x)))
            x = F.relu(self.b2(self.c2(x)))
            x = F.relu(self.c3(x))
            h = F.relu(self.fc(x.flatten(1)))
            lm = self.lm(h).reshape(-1, 68, 3) * 4.0 + SIZE / 2
            d = self.rot(h)
            a, b = d[:, :3], d[:, 3:]
            r1 = a / torch.sqrt((a * a).sum(1, keepdim=True) + 1e-8)
            b = b - (r1 * b).sum(1, keepdim=True) * r1
            r2 = b / torch.sqrt((b * b).sum(1, keepdim=True) + 1e-8)
            r3 = torch.cross(r1, r2, dim=1)
            rot = torch.stack([r1, r2, r3], 2)  # columns, as the 6D representation
            return {"landmarks": lm, "rotation": rot, "dense": self.dn(h).reshape(-1, N_DENSE, 3),
                    "confidence": torch.sigmoid(self.cf(h))}

    torch.manual_seed(0)
    m = Tiny().eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding matters
        for bn in (m.b1, m.b2):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
    return m


def export_tiny_onnx(path: Path, preprocess_config) -> Path:
    """Export the tiny model to ``path`` (opset 17, dynamic batch) with its sidecar; needs torch."""
    import torch

    from fa3d.runtime.metadata import ArtifactMetadata, sidecar_path, write_metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(_tiny_model(), (torch.randn(1, 3, SIZE, SIZE),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["landmarks", "rotation", "dense", "confidence"],
                          dynamic_axes={"input": {0: "batch"}})
    write_metadata(sidecar_path(path), ArtifactMetadata(format="onnx", preprocess=preprocess_config,
                                                        num_dense=N_DENSE))
    return path


def synthetic_calibration_set(preprocess_config, count: int = 64):
    """``count`` crops of synthetic faces (with labels), made by the runtime's preprocessing."""
    from fa3d.calibration.calibset import build_from_samples
    from fa3d.data.datasets.samples import FaceSample
    from fa3d.data.datasets.synthetic import synth_faces

    faces = synth_faces(count, seed=3, size=96)
    samples = [FaceSample(image=f.image, box=f.box, name=f"s{i}", landmarks=f.landmarks, ypr=f.ypr)
               for i, f in enumerate(faces)]
    return build_from_samples(samples, preprocess_config, source="synthetic test faces")
