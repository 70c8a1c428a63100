"""BIWI Kinect Head Pose: ``hpdb/NN/frame_XXXXX_rgb.png`` with ``frame_XXXXX_pose.txt``.

``frame_XXXXX_pose.txt`` holds the head rotation as three rows of three numbers, a blank line, and the
head centre's translation (mm, depth-camera frame)::

    r00 r01 r02
    r10 r11 r12
    r20 r21 r22

    tx ty tz

Axis mapping (derived): the package's rotation is ``R = F @ R_biwi @ F`` with ``F = diag(-1, 1, 1)``
(BIWI's camera x axis is mirrored with respect to our view frame), then
:func:`fa3d.runtime.pose.matrix_to_euler`. Equivalently, with ``M = R_biwi.T``: ``yaw = asin(M20)``,
``pitch = atan2(M21, M22)``, ``roll = -atan2(M10, M00)`` (degrees): the decomposition with which the
head-pose literature compares 300W-LP-trained models on BIWI, so BIWI's angles land in 300W-LP's
``Pose_Para`` convention (the equivalence is checked on random rotations in
``tests/training/test_data_biwi.py``). We have no BIWI frame here to check it on images.

Protocols: ``all`` (every frame; the papers report over the frames where a face is detected, so a frame
without a detection is a failure in ``fa-eval``), and ``split70`` = the 70/30 split by sequence (the
first 70% of the sorted sequence folders, rounded, train; the rest test: 17/7 of BIWI's 24).

BIWI has no 2D landmarks; a sample's ``box`` is the whole frame (use a detector for the face box, as
``fa-eval --dataset biwi`` does).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fa3d.runtime.pose import matrix_to_euler
from fa3d.data.datasets.samples import FaceSample

from ._io import read_image

SOURCE = "biwi"
_F = np.diag([-1.0, 1.0, 1.0])


def read_biwi_pose(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) rotation and (3,) translation from a ``frame_XXXXX_pose.txt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pose file not found")
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        vals = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: not a BIWI pose file (expected numbers only)") from None
    if vals.shape != (4, 3):
        raise ValueError(f"{path}: expected 3 rotation rows and 1 translation row of 3 numbers, "
                         f"got {len(rows)} rows")
    rot = vals[:3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or np.linalg.det(rot) < 0:
        raise ValueError(f"{path}: the 3x3 block is not a rotation matrix")
    return rot, vals[3]


def biwi_to_ypr(rot_biwi: np.ndarray) -> np.ndarray:
    """BIWI rotation (..., 3, 3) -> (..., 3) yaw, pitch, roll degrees in the package convention."""
    return matrix_to_euler(_F @ np.asarray(rot_biwi, dtype=np.float64) @ _F)


def list_biwi(root: str | os.PathLike, protocol: str = "all", part: str = "test") -> list[Path]:
    """RGB frames with a pose file. ``root`` is the folder holding ``hpdb/`` (or ``hpdb`` itself).

    ``protocol='all'``: every frame; ``'split70'``: the ``part`` ('train' or 'test') of the 70/30 split.
    """
    root = Path(root)
    hpdb = root / "hpdb" if (root / "hpdb").is_dir() else root
    seqs = sorted(p for p in hpdb.iterdir() if p.is_dir() and p.name.isdigit()) if hpdb.is_dir() else []
    if not seqs:
        raise FileNotFoundError(f"{hpdb}: no BIWI sequence folders (hpdb/01 ... hpdb/24)")
    if protocol == "split70":
        k = int(round(0.7 * len(seqs)))
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        seqs = seqs[:k] if part == "train" else seqs[k:]
    elif protocol != "all":
        raise ValueError(f"protocol must be 'all' or 'split70', got {protocol!r}")
    frames = []
    for s in seqs:
        frames += [p for p in sorted(s.glob("frame_*_rgb.png"))
                   if p.with_name(p.name.replace("_rgb.png", "_pose.txt")).is_file()]
    if not frames:
        raise ValueError(f"{hpdb}: no frame_XXXXX_rgb.png with its frame_XXXXX_pose.txt")
    return frames


class Biwi(Sequence):
    """BIWI frames as :class:`FaceSample` with ``ypr`` (box = whole frame; see the module docstring)."""

    def __init__(self, root: str | os.PathLike, protocol: str = "all", part: str = "test") -> None:
        self.root = Path(root)
        self.frames = list_biwi(root, protocol, part)

    def __len__(self) -> int:
        return len(self.frames)

    def name(self, i: int) -> str:
        f = self.frames[i]
        return f"{f.parent.name}/{f.name}"

    def ypr(self, i: int) -> np.ndarray:
        f = self.frames[i]
        rot, _ = read_biwi_pose(f.with_name(f.name.replace("_rgb.png", "_pose.txt")))
        return biwi_to_ypr(rot).astype(np.float32)

    def __getitem__(self, i: int) -> FaceSample:
        img = read_image(self.frames[i])
        h, w = img.shape[:2]
        return FaceSample(image=img, box=np.array([0, 0, w - 1, h - 1], np.float32), name=self.name(i),
                          source=SOURCE, ypr=self.ypr(i))
