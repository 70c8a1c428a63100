"""Real faces pasted into frames of any size, for measuring detectors and the whole pipeline (development only).

Faces: aflw19k crops (``../shared/data/aflw19k``: 120x120 AFLW crops, research-only, never committed or
shipped) with the 3DDFA_V2 teacher's 68 points (``teacher_3ddfa_v2_mb05_tta.npz``, ``lm68_crop``) and AFLW's
yaw (``labels.npz``, ``yaw_deg``). A crop is scaled so that the tight box of its 68 points has a chosen width
and pasted with feathered edges (a 12 % alpha ramp, so no hard square edge) onto a face-free background.

Face-free backgrounds (:func:`background`), one of three kinds chosen per frame:
``clutter`` - a colour gradient with random discs, bars and lines and sensor noise
(:func:`fa3d.runtime.synthetic` style); ``noise`` - multi-octave smooth colour noise;
``mosaic`` - aflw19k crops cut into 16x16 blocks, shuffled and flipped, tiled over the frame (real skin,
hair and background statistics without a face's structure).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fa3d.data.datasets.synthetic import clutter_background

BACKGROUNDS = ("clutter", "noise", "mosaic")
YAW_BINS = ((0, 30), (30, 60), (60, 90))


@dataclass(frozen=True)
class FaceSet:
    root: Path
    names: np.ndarray  # (N,)
    lm68: np.ndarray  # (N, 68, 2) crop pixels (teacher)
    yaw: np.ndarray  # (N,) AFLW yaw, degrees
    pts21: np.ndarray  # (N, 21, 2) AFLW points, crop pixels
    visible: np.ndarray  # (N, 21)

    def __len__(self) -> int:
        return len(self.names)

    def image(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.root / "images" / str(self.names[i])), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"{self.root / 'images' / str(self.names[i])}: cannot read")
        return img

    def tight(self, i: int) -> np.ndarray:
        p = self.lm68[i]
        return np.r_[p.min(0), p.max(0)]


def load_faces(root: str | os.PathLike, split: str = "val") -> FaceSet:
    root = Path(root)
    lab = np.load(root / "labels.npz")
    tea = np.load(root / "teacher_3ddfa_v2_mb05_tta.npz")
    if not np.array_equal(lab["names"], tea["names"]):
        raise ValueError(f"{root}: labels.npz and the teacher file list different crops")
    sel = np.flatnonzero(lab["split"] == split)
    return FaceSet(root, lab["names"][sel], tea["lm68_crop"][sel, :, :2].astype(np.float64),
                   lab["yaw_deg"][sel].astype(np.float64), lab["pts21_crop"][sel].astype(np.float64),
                   lab["visible"][sel])


def yaw_bin(yaw: float) -> int:
    a = min(abs(float(yaw)), 89.999)
    return next(i for i, (lo, hi) in enumerate(YAW_BINS) if lo <= a < hi)


def background(kind: str, rng: np.random.Generator, width: int, height: int,
               faces: FaceSet | None = None) -> np.ndarray:
    """A face-free BGR uint8 frame of the given kind (see the module doc)."""
    if kind == "clutter":
        return np.clip(clutter_background(rng, height, width), 0, 255).astype(np.uint8)
    if kind == "noise":
        img = np.zeros((height, width, 3), np.float32)
        for octave in (4, 16, 64):
            small = rng.uniform(0, 255, (max(2, height // octave), max(2, width // octave), 3)).astype(np.float32)
            img += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / 3
        return np.clip(img, 0, 255).astype(np.uint8)
    if kind == "mosaic":
        if faces is None:
            raise ValueError("a mosaic background needs the face set")
        blk = 16
        tiles = []
        for i in rng.choice(len(faces), 4, replace=False):
            im = faces.image(int(i))
            for y in range(0, im.shape[0] - blk + 1, blk):
                for x in range(0, im.shape[1] - blk + 1, blk):
                    tiles.append(im[y:y + blk, x:x + blk])
        ny, nx = -(-height // 32), -(-width // 32)
        pick = rng.integers(0, len(tiles), ny * nx)
        out = np.zeros((ny * 32, nx * 32, 3), np.uint8)
        for j, t in enumerate(pick):
            tile = cv2.resize(tiles[t], (32, 32))
            tile = cv2.flip(tile, int(rng.integers(-1, 2)))
            out[(j // nx) * 32:(j // nx + 1) * 32, (j % nx) * 32:(j % nx + 1) * 32] = tile
        return out[:height, :width].copy()
    raise ValueError(f"unknown background {kind!r}; one of {BACKGROUNDS}")


def _feather(h: int, w: int, ramp: float = 0.12) -> np.ndarray:
    ry, rx = max(1.0, ramp * h), max(1.0, ramp * w)
    ay = np.clip(np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / ry, 0, 1)
    ax = np.clip(np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / rx, 0, 1)
    return (ay[:, None] * ax[None, :])[..., None]


def paste(canvas: np.ndarray, crop: np.ndarray, tight_box: np.ndarray, face_width: float,
          centre: tuple[float, float]) -> np.ndarray:
    """Paste ``crop`` in place so that its tight box is ``face_width`` wide and centred on ``centre``;
    returns the 2x3 affine matrix crop pixels -> canvas pixels (pixel centres, OpenCV convention)."""
    tb = np.asarray(tight_box, np.float64)
    k = face_width / max(tb[2] - tb[0], 1.0)
    tc = (tb[:2] + tb[2:]) / 2
    m = np.array([[k, 0, centre[0] - k * tc[0]], [0, k, centre[1] - k * tc[1]]])
    h, w = canvas.shape[:2]
    ch, cw = crop.shape[:2]
    # the destination rectangle of the crop, clipped to the canvas
    x0, y0 = m[0, 2] - 0.5 * k + 0.5, m[1, 2] - 0.5 * k + 0.5
    ix0, iy0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    ix1, iy1 = min(w, int(np.ceil(x0 + cw * k))), min(h, int(np.ceil(y0 + ch * k)))
    if ix1 <= ix0 or iy1 <= iy0:
        return m
    shifted = m.copy()
    shifted[:, 2] -= [ix0, iy0]
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    patch = cv2.warpAffine(crop, shifted, (ix1 - ix0, iy1 - iy0), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(_feather(ch, cw)[..., 0].astype(np.float32), shifted, (ix1 - ix0, iy1 - iy0),
                           flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    region = canvas[iy0:iy1, ix0:ix1].astype(np.float32)
    canvas[iy0:iy1, ix0:ix1] = (alpha * patch + (1 - alpha) * region).round().astype(np.uint8)
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, np.float64)
    return p @ m[:, :2].T + m[:, 2]
