"""The default model's training mix: aflw19k crops with teacher labels, real labels and dense points.

Per crop of the chosen split (see :mod:`fa3d.data.datasets.aflw` for the layout and conventions):

* ``landmarks`` (68, 3) and ``ypr``: the 3DDFA_V2 teacher's pseudo-labels from
  ``teacher_3ddfa_v2_mb05.npz`` (``lm68_crop`` crop pixels, z >= 0 larger = nearer; ``pose_para_rad``
  = pitch, yaw, roll radians -> package yaw, pitch, roll degrees), weighted by
  ``MixWeights.teacher_landmarks`` / ``teacher_pose`` (pseudo-labels count less than real ones);
* ``pts21`` (NaN where invisible) and ``yaw_gt``: the real AFLW labels, always present;
* ``dense`` (468, 3): MediaPipe FaceMesh points from an ``fa-label`` output folder (labelled on these
  very crops, so in crop pixels), joined by image name, weighted by ``MixWeights.dense``; ``None``
  for crops where MediaPipe found no face or its confidence is below ``min_dense_confidence``.

The box is the teacher's tight 68-point box (``box="teacher"``, the rule the runtime's tracker uses) or
the protocol box that maps the whole crop to the input (``box="protocol"``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.pose import pose_para_to_euler
from fa3d.data.datasets.samples import FaceSample

from ._io import read_image, tight_box
from .aflw import protocol_box, read_aflw_labels
from .labelled import read_labelled

SOURCE = "aflw19k"
TEACHER_FILE = "teacher_3ddfa_v2_mb05.npz"


@dataclass(frozen=True)
class MixWeights:
    """Loss weights carried by each sample (the training config sets them)."""

    teacher_landmarks: float = 0.5
    teacher_pose: float = 0.5
    dense: float = 1.0
    min_dense_confidence: float = 0.5

    def __post_init__(self) -> None:
        for k in ("teacher_landmarks", "teacher_pose", "dense"):
            if getattr(self, k) < 0:
                raise ValueError(f"MixWeights.{k} must be >= 0, got {getattr(self, k)}")


def read_teacher(root: str | os.PathLike, names: np.ndarray,
                 teacher_file: str = TEACHER_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Teacher (N, 68, 3) landmarks and (N, 3) ypr degrees, aligned with ``names`` (checked).

    ``teacher_file``: a file in ``root`` with the keys of ``teacher_3ddfa_v2_mb05.npz`` (e.g. the
    test-time-augmented ``teacher_3ddfa_v2_mb05_tta.npz``)."""
    path = Path(root) / (teacher_file or TEACHER_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the teacher labels are missing (pass teacher=False to train without)")
    with np.load(path, allow_pickle=False) as z:
        need = {"names", "lm68_crop", "pose_para_rad"}
        if need - set(z.files):
            raise ValueError(f"{path}: missing keys {sorted(need - set(z.files))}")
        tn, lm, pp = z["names"], z["lm68_crop"], z["pose_para_rad"]
    n = len(tn)
    if lm.shape != (n, 68, 3) or pp.shape != (n, 3):
        raise ValueError(f"{path}: expected lm68_crop (N,68,3) and pose_para_rad (N,3), got {lm.shape}, {pp.shape}")
    if not np.array_equal(tn, names):
        raise ValueError(f"{path}: names do not match labels.npz row by row; the teacher file belongs to "
                         "another version of the data set")
    return lm.astype(np.float32), pose_para_to_euler(pp).astype(np.float32)


class Aflw19kMix(Sequence):
    """The mix as a lazy sequence of :class:`FaceSample` (labels in RAM, images read on access)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", teacher: bool = True,
                 dense_labels: str | os.PathLike | None = None, weights: MixWeights = MixWeights(),
                 box: str = "teacher", teacher_file: str = TEACHER_FILE) -> None:
        if box not in ("teacher", "protocol"):
            raise ValueError(f"box must be 'teacher' or 'protocol', got {box!r}")
        if box == "teacher" and not teacher:
            raise ValueError("box='teacher' needs teacher=True")
        self.root = Path(root)
        self.labels = read_aflw_labels(self.root)
        self.rows = self.labels.select(split)
        self.weights = weights
        self.box = box
        self.teacher_lm = self.teacher_ypr = None
        if teacher:
            self.teacher_lm, self.teacher_ypr = read_teacher(self.root, self.labels.names, teacher_file)
        self.dense_rows: np.ndarray | None = None
        self.dense = None
        if dense_labels is not None:
            lab = read_labelled(dense_labels)
            idx = lab.index()
            rows = np.array([idx.get(str(n), -1) for n in self.labels.names], dtype=np.int64)
            ok = rows >= 0
            ok[ok] = lab.confidence[rows[ok]] >= weights.min_dense_confidence
            rows[~ok] = -1
            if not (rows[self.rows] >= 0).any():
                raise ValueError(f"{dense_labels}: no image of split {split!r} has dense labels (wrong folder?)")
            self.dense_rows, self.dense = rows, lab.dense

    def __len__(self) -> int:
        return len(self.rows)

    def coverage(self) -> dict[str, float]:
        """Fraction of the split's samples carrying each label."""
        out = {"pts21_visible": float(self.labels.visible[self.rows].mean())}
        out["dense"] = float((self.dense_rows[self.rows] >= 0).mean()) if self.dense_rows is not None else 0.0
        out["teacher"] = 1.0 if self.teacher_lm is not None else 0.0
        return out

    def __getitem__(self, i: int) -> FaceSample:
        r = int(self.rows[i])
        lab, w = self.labels, self.weights
        name = str(lab.names[r])
        img = read_image(lab.root / "images" / name)
        lm = ypr = None
        if self.teacher_lm is not None:
            lm, ypr = self.teacher_lm[r].copy(), self.teacher_ypr[r].copy()
        box = tight_box(lm) if self.box == "teacher" else protocol_box(img.shape[1], img.shape[0])
        dense = None
        if self.dense_rows is not None and self.dense_rows[r] >= 0:
            dense = self.dense[self.dense_rows[r]].copy()
        return FaceSample(image=img, box=box, name=name, source=SOURCE, landmarks=lm,
                          landmarks_weight=w.teacher_landmarks, ypr=ypr, pose_weight=w.teacher_pose,
                          pts21=lab.pts21[r].copy(), yaw_gt=float(lab.yaw_deg[r]), dense=dense,
                          dense_weight=w.dense)


def load_aflw19k(root: str | os.PathLike, split: str = "train", teacher: bool = True,
                 dense_labels: str | os.PathLike | None = None, weights: MixWeights = MixWeights(),
                 box: str = "teacher", teacher_file: str = TEACHER_FILE) -> Aflw19kMix:
    """The aflw19k training mix for ``split`` ('train', 'val' or 'all'); see the module docstring."""
    return Aflw19kMix(root, split=split, teacher=teacher, dense_labels=dense_labels, weights=weights, box=box,
                      teacher_file=teacher_file or TEACHER_FILE)
