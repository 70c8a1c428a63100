"""AFLW2000-3D (Zhu et al. 2016): ``imageXXXXX.jpg`` + ``imageXXXXX.mat``.

Keys read: ``pt3d_68`` (3, 68) float32: x, y in MATLAB **1-based** image pixels and z (the 3DMM's depth
in pixel scale, larger = nearer the camera); ``Pose_Para`` (1, 7) float32: pitch, yaw, roll (radians),
tx, ty, tz, scale. On load x and y get ``-1`` (0-based OpenCV pixels); z is kept; the pose becomes
(yaw, pitch, roll) degrees with :func:`fa3d.runtime.pose.pose_para_to_euler`. The box is the tight box
of the 68 points (not clipped to the image; some points lie outside it).

Checked on the real samples: the points drawn after conversion sit on the eye corners and lips
(``tests/training/test_data_aflw2000.py`` draws and checks them numerically: the rotation fitted to the
converted points agrees with ``Pose_Para``'s rotation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fa3d.runtime.pose import pose_para_to_euler
from fa3d.data.datasets.samples import FaceSample

from ._io import load_mat, read_image, tight_box

SOURCE = "aflw2000-3d"


def list_aflw2000(root: str | os.PathLike) -> list[str]:
    """Sorted stems (``image00002``) of the images that have a ``.mat`` beside them."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: AFLW2000-3D folder not found")
    stems = sorted(p.stem for p in root.glob("image*.jpg") if p.with_suffix(".mat").is_file())
    if not stems:
        raise ValueError(f"{root}: no imageXXXXX.jpg with its .mat: not an AFLW2000-3D folder")
    return stems


def read_aflw2000_labels(mat_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(68, 3) float32 landmarks (0-based) and (3,) float32 yaw, pitch, roll degrees from one .mat."""
    m = load_mat(mat_path, {"pt3d_68": (3, 68), "Pose_Para": (1, 7)})
    pts = m["pt3d_68"].T.astype(np.float64).copy()
    pts[:, :2] -= 1.0
    ypr = pose_para_to_euler(m["Pose_Para"][0, :3])
    return pts.astype(np.float32), ypr.astype(np.float32)


def read_aflw2000_item(root: str | os.PathLike, stem: str) -> FaceSample:
    root = Path(root)
    lm, ypr = read_aflw2000_labels(root / f"{stem}.mat")
    return FaceSample(image=read_image(root / f"{stem}.jpg"), box=tight_box(lm), name=f"{stem}.jpg",
                      source=SOURCE, landmarks=lm, ypr=ypr)


class AFLW2000(Sequence):
    """AFLW2000-3D as a lazy sequence of :class:`FaceSample`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.stems = list_aflw2000(self.root)

    def __len__(self) -> int:
        return len(self.stems)

    def __getitem__(self, i: int) -> FaceSample:
        return read_aflw2000_item(self.root, self.stems[i])
