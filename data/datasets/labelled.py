"""Our labelled-folder format: images plus one ``labels.npz`` (written by ``fa-label``).

Layout::

    OUT/
      labels.npz
      images/            (absent when the labels point at the source folder, see ``image_dir``)

``labels.npz`` (``np.savez``, no pickles; one row per labelled face, so a name may repeat when an
image holds several faces):

=================  ===============  =========================================================
key                shape, dtype     meaning
=================  ===============  =========================================================
``format_version`` () int64         :data:`FORMAT_VERSION`
``teacher``        () str           teacher name and version, e.g. ``mediapipe-facemesh mediapipe==0.10.21``
``image_dir``      () str           folder of the images: relative to OUT (``images``) or absolute
``names``          (N,) str         image file names inside ``image_dir``
``lm68``           (N, 68, 3) f32   68 iBUG points, 0-based image pixels, z larger = nearer
``ypr``            (N, 3) f32       yaw, pitch, roll in degrees (package convention)
``dense``          (N, K, 3) f32    teacher dense points (K = 468 for MediaPipe), same frame as lm68
``confidence``     (N,) f32         teacher's face confidence in [0, 1]
``boxes``          (N, 4) f32       x1, y1, x2, y2: tight box of lm68
``failed``         (M,) str         images on which the teacher found no face (kept, not dropped)
=================  ===============  =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fa3d.runtime.atomic import atomic_path
from fa3d.data.datasets.samples import FaceSample

from ._io import read_image

FORMAT_VERSION = 1
LABELS_FILE = "labels.npz"


@dataclass(frozen=True)
class LabelledSet:
    """The validated content of a labelled folder."""

    root: Path
    image_dir: Path
    teacher: str
    names: np.ndarray
    lm68: np.ndarray
    ypr: np.ndarray
    dense: np.ndarray
    confidence: np.ndarray
    boxes: np.ndarray
    failed: np.ndarray

    def __len__(self) -> int:
        return len(self.names)

    def index(self) -> dict[str, int]:
        """Image name -> row of its most confident face."""
        out: dict[str, int] = {}
        for i, n in enumerate(self.names):
            if n not in out or self.confidence[i] > self.confidence[out[n]]:
                out[str(n)] = i
        return out


def write_labelled(out: str | os.PathLike, *, teacher: str, image_dir: str, names, lm68, ypr, dense,
                   confidence, boxes, failed=()) -> Path:
    """Validate and write ``OUT/labels.npz`` atomically. Returns its path."""
    n = len(names)
    arrays = {
        "format_version": np.int64(FORMAT_VERSION),
        "teacher": np.str_(teacher),
        "image_dir": np.str_(image_dir),
        "names": np.asarray(names, dtype=np.str_).reshape(n),
        "lm68": np.asarray(lm68, dtype=np.float32).reshape(n, 68, 3),
        "ypr": np.asarray(ypr, dtype=np.float32).reshape(n, 3),
        "dense": np.asarray(dense, dtype=np.float32).reshape(n, -1, 3) if n else np.zeros((0, 0, 3), np.float32),
        "confidence": np.asarray(confidence, dtype=np.float32).reshape(n),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(n, 4),
        "failed": np.asarray(list(failed), dtype=np.str_),
    }
    path = Path(out) / LABELS_FILE
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def read_labelled(root: str | os.PathLike) -> LabelledSet:
    """Read and validate a labelled folder (or its ``labels.npz``)."""
    root = Path(root)
    path = root if root.suffix == ".npz" else root / LABELS_FILE
    root = path.parent
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no labels file; a labelled folder is written by `fa-label SRC OUT`")
    with np.load(path, allow_pickle=False) as z:
        missing = {"format_version", "teacher", "image_dir", "names", "lm68", "ypr", "dense", "confidence",
                   "boxes", "failed"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: not a labelled-folder file, missing keys {sorted(missing)}")
        version = int(z["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {version}, this fa3d reads version {FORMAT_VERSION}; "
                             "re-run fa-label with this version")
        d = {k: z[k] for k in z.files}
    n = len(d["names"])
    expect = {"lm68": (n, 68, 3), "ypr": (n, 3), "confidence": (n,), "boxes": (n, 4)}
    for k, shape in expect.items():
        if d[k].shape != shape or d[k].dtype != np.float32:
            raise ValueError(f"{path}: {k} must be float32 {shape}, got {d[k].dtype} {d[k].shape}")
    if d["dense"].ndim != 3 or d["dense"].shape[0] != n or d["dense"].shape[2] != 3 \
            or d["dense"].dtype != np.float32:
        raise ValueError(f"{path}: dense must be float32 (N={n}, K, 3), got {d['dense'].dtype} {d['dense'].shape}")
    image_dir = Path(str(d["image_dir"]))
    if not image_dir.is_absolute():
        image_dir = root / image_dir
    return LabelledSet(root=root, image_dir=image_dir, teacher=str(d["teacher"]), names=d["names"],
                       lm68=d["lm68"], ypr=d["ypr"], dense=d["dense"], confidence=d["confidence"],
                       boxes=d["boxes"], failed=d["failed"])


class LabelledFolder(Sequence):
    """A labelled folder as a lazy sequence of :class:`FaceSample` (images read on access)."""

    def __init__(self, root: str | os.PathLike, weight: float = 1.0, min_confidence: float = 0.0) -> None:
        self.labels = read_labelled(root)
        self.weight = float(weight)
        self.rows = np.flatnonzero(self.labels.confidence >= min_confidence)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> FaceSample:
        r = int(self.rows[i])
        lab = self.labels
        name = str(lab.names[r])
        return FaceSample(image=read_image(lab.image_dir / name), box=lab.boxes[r].copy(), name=name,
                          source=f"labelled:{lab.teacher}", landmarks=lab.lm68[r].copy(),
                          landmarks_weight=self.weight, ypr=lab.ypr[r].copy(), pose_weight=self.weight,
                          dense=lab.dense[r].copy(), dense_weight=self.weight)
