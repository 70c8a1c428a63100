"""300W-LP (Zhu et al. 2016): the AFW, HELEN, IBUG, LFPW folders and their ``_Flip`` twins.

Per image ``<FOLDER>/<name>.jpg`` + ``<FOLDER>/<name>.mat`` with (as in the real sample):

* ``Pose_Para`` (1, 7) float32: pitch, yaw, roll (radians), tx, ty, tz, scale -> (yaw, pitch, roll) deg;
* ``pt2d`` (2, 68) float64: 2D landmarks, MATLAB 1-based pixels;
* ``roi`` (1, 4) int16: the source box (unused: our box is the landmarks' tight box).

Optional ``landmarks/<FOLDER>/<name>_pts.mat`` with ``pts_2d`` and ``pts_3d`` (68, 2) float64, 1-based:
``pts_3d`` are the 2D projections of the 3D landmarks (the AFLW2000-3D semantics; the jaw follows the
3D face, not the visible silhouette), which is what we train on when present. The released tree has
only the four un-flipped folders: for a ``_Flip`` image whose own ``landmarks/<FOLDER>_Flip/...`` is
absent, the un-flipped twin's ``pts_3d`` is mirrored (``x -> W - 1 - x`` and the mirror permutation).
Without any landmarks file, ``pt2d`` is used.

All x, y get ``-1`` on load (0-based OpenCV pixels). None of these files holds a depth: z is estimated
from the package's mean shape posed with the image's ``Pose_Para`` rotation
(:func:`fa3d.data.datasets._io.depth_from_mean_shape`); x, y are the dataset's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fa3d.runtime import schema
from fa3d.runtime.pose import euler_to_matrix, pose_para_to_euler
from fa3d.data.datasets.samples import FaceSample

from ._io import depth_from_mean_shape, load_mat, read_image, tight_box

SOURCE = "300w-lp"
BASE_FOLDERS = ("AFW", "HELEN", "IBUG", "LFPW")
ALL_FOLDERS = BASE_FOLDERS + tuple(f"{f}_Flip" for f in BASE_FOLDERS)


def list_300wlp(root: str | os.PathLike, folders: tuple[str, ...] = ALL_FOLDERS) -> list[tuple[str, str]]:
    """(folder, stem) of every image with its .mat, in sorted order; missing folders are an error."""
    root = Path(root)
    items = []
    for f in folders:
        d = root / f
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: 300W-LP folder not found (expected {', '.join(ALL_FOLDERS)} under {root})")
        items += [(f, p.stem) for p in sorted(d.glob("*.jpg")) if p.with_suffix(".mat").is_file()]
    if not items:
        raise ValueError(f"{root}: no .jpg with its .mat in {folders}")
    return items


def _landmarks_file(root: Path, folder: str, stem: str) -> tuple[Path | None, bool]:
    """The _pts.mat to use and whether it must be mirrored."""
    own = root / "landmarks" / folder / f"{stem}_pts.mat"
    if own.is_file():
        return own, False
    if folder.endswith("_Flip"):
        twin = root / "landmarks" / folder[: -len("_Flip")] / f"{stem}_pts.mat"
        if twin.is_file():
            return twin, True
    return None, False


def read_300wlp_item(root: str | os.PathLike, folder: str, stem: str) -> FaceSample:
    root = Path(root)
    mat = root / folder / f"{stem}.mat"
    m = load_mat(mat, {"Pose_Para": (1, 7), "pt2d": (2, 68)})
    image = read_image(root / folder / f"{stem}.jpg")
    ypr = pose_para_to_euler(m["Pose_Para"][0, :3])
    lm_path, mirror = _landmarks_file(root, folder, stem)
    if lm_path is not None:
        lmm = load_mat(lm_path, {"pts_3d": (68, 2)})
        xy = lmm["pts_3d"].astype(np.float64) - 1.0
        if mirror:
            xy = schema.mirror_landmarks(xy, image.shape[1])
    else:
        xy = m["pt2d"].T.astype(np.float64) - 1.0
    lm = depth_from_mean_shape(xy, euler_to_matrix(ypr)).astype(np.float32)
    return FaceSample(image=image, box=tight_box(lm), name=f"{folder}/{stem}.jpg", source=SOURCE,
                      landmarks=lm, ypr=ypr.astype(np.float32))


class W300LP(Sequence):
    """300W-LP as a lazy sequence of :class:`FaceSample` (images and .mat files read on access)."""

    def __init__(self, root: str | os.PathLike, folders: tuple[str, ...] = ALL_FOLDERS) -> None:
        self.root = Path(root)
        self.items = list_300wlp(self.root, folders)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> FaceSample:
        folder, stem = self.items[i]
        return read_300wlp_item(self.root, folder, stem)
