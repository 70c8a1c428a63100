"""Folders of iBUG ``.pts`` annotations (300-W, menpo) with their images.

Format: ``version: 1``, ``n_points: 68``, ``{``, 68 lines ``x y``, ``}``; coordinates are MATLAB
**1-based** pixels (the 300-W convention): ``-1`` on load. The image is the file with the same stem and
an image extension. The files are 2D: z is estimated from the package's mean shape fitted to the points
(:func:`fa3d.data.datasets._io.depth_from_mean_shape`); no pose label is produced.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fa3d.data.datasets.samples import FaceSample
from fa3d.runtime.sources import IMAGE_SUFFIXES

from ._io import depth_from_mean_shape, read_image, tight_box

SOURCE = "ibug-pts"


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """(N, 2) float64 points of a .pts file, converted to 0-based pixels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: .pts file not found")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    try:
        n_line = next(ln for ln in lines if ln.lower().startswith("n_points"))
        n = int(n_line.split(":")[1])
        start, end = lines.index("{"), lines.index("}")
    except (StopIteration, ValueError, IndexError):
        raise ValueError(f"{path}: not an iBUG .pts file (needs 'n_points: N' and the points "
                         "between '{' and '}')") from None
    body = lines[start + 1:end]
    if len(body) != n:
        raise ValueError(f"{path}: header says {n} points, found {len(body)}")
    try:
        pts = np.array([[float(v) for v in ln.split()[:2]] for ln in body], dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: a point line is not two numbers") from None
    if pts.shape != (n, 2) or not np.isfinite(pts).all():
        raise ValueError(f"{path}: points must be N lines of 'x y' finite numbers")
    return pts - 1.0


def _image_for(pts: Path) -> Path:
    for ext in IMAGE_SUFFIXES:
        for e in (ext, ext.upper()):
            p = pts.with_suffix(e)
            if p.is_file():
                return p
    raise FileNotFoundError(f"{pts}: no image with the same name ({', '.join(IMAGE_SUFFIXES)})")


class IbugPts(Sequence):
    """A folder (searched recursively) of 68-point .pts files with images, as :class:`FaceSample`."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: folder not found")
        self.files = sorted(self.root.rglob("*.pts"))
        if not self.files:
            raise ValueError(f"{self.root}: no .pts files")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> FaceSample:
        f = self.files[i]
        xy = read_pts(f)
        if xy.shape != (68, 2):
            raise ValueError(f"{f}: expected 68 points, got {len(xy)}")
        lm = depth_from_mean_shape(xy).astype(np.float32)
        img = _image_for(f)
        return FaceSample(image=read_image(img), box=tight_box(lm), name=str(img.relative_to(self.root)),
                          source=SOURCE, landmarks=lm)
