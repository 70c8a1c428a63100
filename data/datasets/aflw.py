"""AFLW in the 3DDFA crop protocol (the ``aflw19k`` layout): 120x120 crops with 21 points and yaw.

Folder layout: ``images/`` and ``labels.npz`` with

* ``names`` (N,) str; ``split`` (N,) ``'train'`` / ``'val'`` (optional: absent = all ``'test'``);
* ``pts21_crop`` (N, 21, 2) float32 crop pixels, ``-1`` where invisible; ``visible`` (N, 21) bool;
* ``yaw_deg`` (N,) float32; ``roi_box`` (N, 4) float32 (the crop in the original photo).

Conventions settled here:

* Coordinates: ``pts21_crop`` are already crop pixels (``(orig - roi_xy) * 120 / roi_w``, checked to
  0.005 px mean against ``pts21_orig``), used as 0-based OpenCV pixels unchanged; invisible points
  become NaN.
* Yaw sign: AFLW's ``yaw_deg`` has the package's sign (that of ``Pose_Para``'s yaw): over the 19,080
  crops its correlation with the 3DDFA teacher's ``Pose_Para`` yaw is +0.97 (it would be -0.97 with the
  opposite sign). Positive yaw = the nose points towards the image's left.
* Box: the crops *are* the protocol's input, so the face box is the square whose 3DDFA enlargement
  (``preprocess.crop_boxes``, side x sqrt(2)) is exactly the crop: centre ((W-1)/2, (H-1)/2), side
  ``W / sqrt(2)`` (84.85 px for 120 px crops). The teacher's tight 68-point box has a median side of
  83.0 px and a median centre of (59.8, 60.1) on these crops, so the two rules agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.preprocess import DEFAULT_CROP_SCALE
from fa3d.data.datasets.samples import FaceSample

from ._io import load_npz, read_image

SOURCE = "aflw"
LABELS_FILE = "labels.npz"


@dataclass(frozen=True)
class AflwLabels:
    root: Path
    names: np.ndarray  # (N,) str
    pts21: np.ndarray  # (N, 21, 2) float32, NaN = invisible
    visible: np.ndarray  # (N, 21) bool
    yaw_deg: np.ndarray  # (N,) float32
    split: np.ndarray  # (N,) str

    def __len__(self) -> int:
        return len(self.names)

    def select(self, split: str | None) -> np.ndarray:
        """Row indices of a split (None or 'all' = every row)."""
        if split in (None, "all"):
            return np.arange(len(self.names))
        rows = np.flatnonzero(self.split == split)
        if rows.size == 0:
            raise ValueError(f"{self.root / LABELS_FILE}: no sample in split {split!r} "
                             f"(splits: {sorted(set(self.split.tolist()))})")
        return rows


def read_aflw_labels(root: str | os.PathLike) -> AflwLabels:
    """Read and validate ``root/labels.npz`` of the aflw19k layout."""
    root = Path(root)
    path = root / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; an AFLW crop folder has images/ and labels.npz")
    z = load_npz(path, {"names", "pts21_crop", "visible", "yaw_deg"}, optional=("split",))
    names, pts, vis, yaw = z["names"], z["pts21_crop"], z["visible"], z["yaw_deg"]
    split = z["split"] if "split" in z else np.full(len(names), "test")
    n = len(names)
    if pts.shape != (n, 21, 2) or vis.shape != (n, 21) or vis.dtype != bool or yaw.shape != (n,) \
            or split.shape != (n,):
        raise ValueError(f"{path}: expected pts21_crop (N,21,2), visible (N,21) bool, yaw_deg (N,), split (N,) "
                         f"with N={n}; got {pts.shape}, {vis.dtype} {vis.shape}, {yaw.shape}, {split.shape}")
    pts = pts.astype(np.float32).copy()
    pts[~vis] = np.nan
    if not np.isfinite(pts[vis]).all() or not np.isfinite(yaw).all():
        raise ValueError(f"{path}: visible points and yaw must be finite")
    return AflwLabels(root=root, names=names, pts21=pts, visible=vis, yaw_deg=yaw.astype(np.float32),
                      split=split)


def protocol_box(width: int, height: int) -> np.ndarray:
    """(4,) float32 face box whose sqrt(2) crop box is the whole (width x height) crop."""
    side = min(width, height) / DEFAULT_CROP_SCALE
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


class AflwCrops(Sequence):
    """AFLW crops (real labels only: 21 points, yaw) as a lazy sequence of :class:`FaceSample`."""

    def __init__(self, root: str | os.PathLike, split: str | None = None) -> None:
        self.labels = read_aflw_labels(root)
        self.rows = self.labels.select(split)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> FaceSample:
        r = int(self.rows[i])
        lab = self.labels
        name = str(lab.names[r])
        img = read_image(lab.root / "images" / name)
        return FaceSample(image=img, box=protocol_box(img.shape[1], img.shape[0]), name=name, source=SOURCE,
                          pts21=lab.pts21[r].copy(), yaw_gt=float(lab.yaw_deg[r]))
