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
from fa3d.data.evaluation.metrics import yaw_bins

from ._io import load_npz, read_image, tight_box
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
    z = load_npz(path, {"names", "lm68_crop", "pose_para_rad"})
    tn, lm, pp = z["names"], z["lm68_crop"], z["pose_para_rad"]
    n = len(tn)
    if lm.shape != (n, 68, 3) or pp.shape != (n, 3):
        raise ValueError(f"{path}: expected lm68_crop (N,68,3) and pose_para_rad (N,3), got {lm.shape}, {pp.shape}")
    if not np.array_equal(tn, names):
        raise ValueError(f"{path}: names do not match labels.npz row by row; the teacher file belongs to "
                         "another version of the data set")
    return lm.astype(np.float32), pose_para_to_euler(pp).astype(np.float32)


def join_dense(dense_labels: str | os.PathLike | None, names: np.ndarray, rows: np.ndarray, split: str,
               weights: MixWeights) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row of each of ``names`` in an ``fa-label`` output (-1: no face found or confidence below
    ``weights.min_dense_confidence``) and that output's dense points; (None, None) without ``dense_labels``."""
    if dense_labels is None:
        return None, None
    lab = read_labelled(dense_labels)
    idx = lab.index()
    found = np.array([idx.get(str(n), -1) for n in names], dtype=np.int64)
    ok = found >= 0
    ok[ok] = lab.confidence[found[ok]] >= weights.min_dense_confidence
    found[~ok] = -1
    if not (found[rows] >= 0).any():
        raise ValueError(f"{dense_labels}: no image of split {split!r} has dense labels (wrong folder?)")
    return found, lab.dense


BOX_RULES = ("teacher", "protocol")


def check_box_rule(box: str) -> str:
    if box not in BOX_RULES:
        raise ValueError(f"box must be one of {', '.join(BOX_RULES)}, got {box!r}")
    return box


def face_box(box: str, lm: np.ndarray | None, img: np.ndarray) -> np.ndarray:
    """The training box of a crop: the teacher's tight 68-point box (``"teacher"``: the tracker's rule and the
    benchmark's ground-truth box), or the protocol box whose enlargement is the whole crop (``"protocol"``: the
    input the teacher itself was given when it labelled the crop)."""
    return tight_box(lm) if box == "teacher" else protocol_box(img.shape[1], img.shape[0])


class Aflw19kMix(Sequence):
    """The mix as a lazy sequence of :class:`FaceSample` (labels in RAM, images read on access)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", teacher: bool = True,
                 dense_labels: str | os.PathLike | None = None, weights: MixWeights = MixWeights(),
                 box: str = "teacher", teacher_file: str = TEACHER_FILE) -> None:
        check_box_rule(box)
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
        self.dense_rows, self.dense = join_dense(dense_labels, self.labels.names, self.rows, split, weights)

    def __len__(self) -> int:
        return len(self.rows)

    def teacher_yaw_bins(self) -> np.ndarray | None:
        """The teacher's |yaw| bin (:func:`yaw_bins`) of each sample of the split; None without the teacher."""
        return None if self.teacher_ypr is None else yaw_bins(self.teacher_ypr[self.rows])

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
        box = face_box(self.box, lm, img)
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


EXTRA_SOURCE = "faces_extra"
EXTRA_SOURCES = ("fairface", "helen", "afw", "mtfl")


class FacesExtraMix(Sequence):
    """``faces_extra``: 120x120 crops cut with aflw19k's protocol from FairFace, 300W HELEN / AFW and MTFL, with
    the same test-time-augmented teacher labels (``teacher_3ddfa_v2_mb05_tta.npz``, names checked row by row)
    and, optionally, ``fa-label`` dense points. ``labels.npz``: ``names``, ``split`` ('train' | 'val' = HELEN
    test), ``source``, ``pts68_crop`` (human 300W points for HELEN / AFW, NaN elsewhere). There are no AFLW 21
    points or human yaw here; the box is the teacher's tight 68-point box or the protocol box, as for aflw19k."""

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 dense_labels: str | os.PathLike | None = None, weights: MixWeights = MixWeights(),
                 teacher_file: str = "teacher_3ddfa_v2_mb05_tta.npz", box: str = "teacher") -> None:
        self.box = check_box_rule(box)
        self.root = Path(root)
        path = self.root / "labels.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not a faces_extra folder (labels.npz is missing)")
        z = load_npz(path, {"names", "split", "source", "pts68_crop"})
        self.names, splits, self.source = z["names"], z["split"], z["source"]
        self.pts68 = z["pts68_crop"].astype(np.float32)
        n = len(self.names)
        if splits.shape != (n,) or self.source.shape != (n,) or self.pts68.shape != (n, 68, 2):
            raise ValueError(f"{path}: split, source and pts68_crop must have one row per name ({n})")
        unknown = sorted(set(self.source.tolist()) - set(EXTRA_SOURCES))
        if unknown:
            raise ValueError(f"{path}: unknown sources {unknown}; expected {EXTRA_SOURCES}")
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
        self.rows = np.arange(n) if split == "all" else np.flatnonzero(splits == split)
        self.weights = weights
        self.teacher_lm, self.teacher_ypr = read_teacher(self.root, self.names, teacher_file)
        self.dense_rows, self.dense = join_dense(dense_labels, self.names, self.rows, split, weights)

    def __len__(self) -> int:
        return len(self.rows)

    def teacher_yaw_bins(self) -> np.ndarray:
        return yaw_bins(self.teacher_ypr[self.rows])

    def human68(self, i: int) -> np.ndarray | None:
        """The human 300W 68 points (crop pixels) of sample ``i``, or None (FairFace, MTFL)."""
        p = self.pts68[int(self.rows[i])]
        return None if np.isnan(p).any() else p.copy()

    def __getitem__(self, i: int) -> FaceSample:
        r = int(self.rows[i])
        name = str(self.names[r])
        img = read_image(self.root / "images" / name)
        lm, w = self.teacher_lm[r].copy(), self.weights
        dense = None
        if self.dense_rows is not None and self.dense_rows[r] >= 0:
            dense = self.dense[self.dense_rows[r]].copy()
        return FaceSample(image=img, box=face_box(self.box, lm, img), name=name, source=EXTRA_SOURCE,
                          landmarks=lm, landmarks_weight=w.teacher_landmarks, ypr=self.teacher_ypr[r].copy(),
                          pose_weight=w.teacher_pose, dense=dense, dense_weight=w.dense)
