"""Shared file reading for the loaders: images, MATLAB files, and 2D -> 3D landmark completion."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fa3d.runtime import images
from fa3d.runtime import schema
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.preprocess import landmark_box

scipy_io = lazy_import("scipy.io", extra="train")  # only where .mat files are read


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A BGR uint8 image (H, W, 3); grey images are converted. Raises naming the file: FileNotFoundError, or a
    ValueError (:class:`fa3d.runtime.images.ImageError`) for an image that is too large or does not decode."""
    return images.read_image(path)


def load_npz(path: str | os.PathLike, need: set[str], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The ``need`` arrays (and those of ``optional`` that are there) of an existing ``.npz`` file, read without
    pickles; a ValueError naming the missing keys."""
    with np.load(path, allow_pickle=False) as z:
        missing = need - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing keys {sorted(missing)}")
        return {k: z[k] for k in (*sorted(need), *optional) if k in z.files}


def load_mat(path: str | os.PathLike, required: dict[str, tuple[int, ...] | None]) -> dict[str, np.ndarray]:
    """Load a MATLAB file and check that the ``required`` keys exist with the given shapes (None = any)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: .mat file not found")
    try:
        m = scipy_io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for bad files
        raise ValueError(f"{path}: cannot read as a MATLAB file ({e})") from e
    for key, shape in required.items():
        if key not in m:
            have = sorted(k for k in m if not k.startswith("__"))
            raise ValueError(f"{path}: missing the variable {key!r} (has {have})")
        if shape is not None and m[key].shape != shape:
            raise ValueError(f"{path}: {key!r} must have shape {shape}, got {m[key].shape}")
        if not np.issubdtype(m[key].dtype, np.number) or not np.isfinite(m[key]).all():
            raise ValueError(f"{path}: {key!r} must be finite numbers")
    return m


def tight_box(points: np.ndarray) -> np.ndarray:
    """(4,) float32 tight box of (N, >=2) points, NaN ignored."""
    return landmark_box(points)[0].astype(np.float32)


def depth_from_mean_shape(xy: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """Complete 2D image landmarks (68, 2) to (68, 3) with a z taken from the package's mean shape.

    The mean shape is rotated by ``rotation`` (package convention; estimated from the 2D points by an
    orthographic affine fit when None), scaled and shifted onto the points by least squares in x, y; the
    z of the posed mean shape (pixel scale, larger = nearer) is returned beside the given x, y. Used for
    datasets with 2D landmarks only (iBUG .pts, 300W-LP's ``pt2d``/``pts_3d`` which are 2D): the depth
    is an estimate, x and y are the dataset's.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape != (68, 2):
        raise ValueError(f"expected (68, 2) points, got {xy.shape}")
    m = schema.mean_shape().astype(np.float64)
    v = xy * np.array([1.0, -1.0])  # view frame: y up
    if rotation is None:
        mc = m - m.mean(0)
        a, *_ = np.linalg.lstsq(mc, v - v.mean(0), rcond=None)  # (3, 2): v ~ mc @ a
        rows = a.T  # (2, 3), rows = s * R[0], s * R[1]
        u, _, vt = np.linalg.svd(rows, full_matrices=False)
        r2 = u @ vt  # nearest orthonormal rows
        rotation = np.vstack([r2, np.cross(r2[0], r2[1])])
    rotation = np.asarray(rotation, dtype=np.float64)
    posed = m @ rotation.T
    p2 = posed[:, :2] - posed[:, :2].mean(0)
    s = float((p2 * (v - v.mean(0))).sum() / (p2 ** 2).sum())
    z = s * posed[:, 2]
    return np.concatenate([xy, (z - z.min())[:, None]], axis=1)
