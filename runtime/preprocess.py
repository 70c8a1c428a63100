"""The one preprocessing implementation: face box -> square crop -> model input, and back.

Training, calibration, export checks and the runtime all call this module; nothing else crops faces.

Coordinates are 0-based OpenCV pixel coordinates: pixel (row i, col j) has its centre at x=j, y=i.

The crop rule (3DDFA's rule for a box derived from landmarks):

* a *face box* is the tight box ``(x1, y1, x2, y2)`` of the 68 landmarks (a detector's box is first
  mapped to that by the detector adapter);
* the *crop box* is the square with the same centre and side ``crop_scale * max(w, h)``
  (``crop_scale = sqrt(2)`` by default, as 3DDFA does);
* the crop box's continuous extent ``[x1, x1 + side]`` is mapped onto the input's extent
  ``[-0.5, S - 0.5]`` by an affine transform ``M`` (2x3, image -> crop), optionally rotated in plane
  about the box centre (training augmentation). Pixels outside the image are filled with
  ``border_value``.

Landmarks go forward with ``M`` and back with its exact inverse; ``z`` is scaled by the transform's
isotropic scale ``s`` (``z_crop = s * z_image``), so depth stays in the pixel units of x and y.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .pose import in_plane_rotation

PREPROCESS_VERSION = 1
DEFAULT_CROP_SCALE = float(np.sqrt(2.0))


#: the largest model input side (a crop of S x S x 3 floats per face: memory stays bounded)
MAX_INPUT_SIZE = 4096
MAX_CROP_SCALE = 10.0
MAX_STD = 1000.0


def strict_int(v, name: str, low: int | None = None, high: int | None = None) -> int:
    """``v`` as an int if it is an integer (an integral float such as 64.0 too; never a bool, NaN or
    infinity) within [low, high]; ValueError naming ``name`` otherwise."""
    ok = isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
    if not ok and isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        ok = True
    if not ok or (low is not None and v < low) or (high is not None and v > high):
        rng = "" if low is None and high is None else f" in [{low}, {high}]" if high is not None else f" >= {low}"
        raise ValueError(f"{name} must be an integer{rng}, got {v!r}")
    return int(v)


def _real(v, name: str) -> float:
    """``v`` as a finite float (never a bool or a string); ValueError naming ``name`` otherwise."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v):
        raise ValueError(f"{name} must hold finite numbers, got {v!r}")
    return float(v)


def _finite_in(v, low: float, high: float) -> bool:
    try:
        return math.isfinite(v) and low <= v <= high
    except TypeError:
        return False


@dataclass(frozen=True)
class PreprocessConfig:
    """Everything that defines how a face box becomes a model input. Stored in every artifact."""

    input_size: int
    crop_scale: float = DEFAULT_CROP_SCALE
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    channel_order: str = "RGB"  # the model's input channel order; images arrive as OpenCV BGR
    interpolation: str = "linear"
    border_value: int = 0
    version: int = PREPROCESS_VERSION

    def __post_init__(self) -> None:
        strict_int(self.input_size, "input_size", 8, MAX_INPUT_SIZE)
        if not _finite_in(self.crop_scale, 0.0, MAX_CROP_SCALE) or self.crop_scale == 0:
            raise ValueError(f"crop_scale must be a number in (0, {MAX_CROP_SCALE:g}], got {self.crop_scale!r}")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.interpolation not in _INTERP:
            raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {self.interpolation!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need three values each")
        if not all(_finite_in(v, 0.0, 255.0) for v in self.mean):
            raise ValueError(f"mean must hold three finite numbers in [0, 255] (pixel values), got {list(self.mean)}")
        if not all(_finite_in(v, 0.0, MAX_STD) and v > 0 for v in self.std):
            raise ValueError(f"std must hold three finite numbers in (0, {MAX_STD:g}], got {list(self.std)}")
        strict_int(self.border_value, "border_value", 0, 255)
        if self.version != PREPROCESS_VERSION:
            raise ValueError(f"preprocessing version {self.version} is not supported by this fa3d "
                             f"(it implements version {PREPROCESS_VERSION}); upgrade fa3d or re-export the model")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        """From a sidecar's ``preprocess`` block: every number type- and range-checked (ValueError)."""
        try:
            return cls(input_size=strict_int(d["input_size"], "input_size"),
                       crop_scale=_real(d["crop_scale"], "crop_scale"),
                       mean=tuple(_real(v, "mean") for v in d["mean"]), std=tuple(_real(v, "std") for v in d["std"]),
                       channel_order=str(d["channel_order"]), interpolation=str(d["interpolation"]),
                       border_value=strict_int(d["border_value"], "border_value"),
                       version=strict_int(d["version"], "version"))
        except KeyError as e:
            raise ValueError(f"preprocessing description lacks the key {e.args[0]!r}") from None

    def fingerprint(self) -> str:
        """A short hash that changes whenever any preprocessing parameter changes."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_INTERP = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"expected boxes of shape (B, 4) as x1, y1, x2, y2, got {np.shape(boxes)}")
    if not np.isfinite(b).all():
        raise ValueError("boxes contain NaN or infinite values")
    if np.any(b[:, 2] <= b[:, 0]) or np.any(b[:, 3] <= b[:, 1]):
        raise ValueError("every box needs x2 > x1 and y2 > y1")
    return b


def landmark_box(points: np.ndarray) -> np.ndarray:
    """Tight boxes (B, 4) of landmarks (B, N, >=2) or (N, >=2), ignoring NaN points."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[2] < 2:
        raise ValueError(f"expected landmarks (B, N, 2|3), got shape {np.shape(points)}")
    xy = p[..., :2]
    if np.isnan(xy).all(axis=(1, 2)).any():
        raise ValueError("a face has no valid landmark")
    return np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=1)


def crop_boxes(face_boxes: np.ndarray, crop_scale: float = DEFAULT_CROP_SCALE) -> np.ndarray:
    """Square crop boxes (B, 4): same centre as the face box, side ``crop_scale * max(w, h)``."""
    b = _as_boxes(face_boxes)
    centre = (b[:, :2] + b[:, 2:]) / 2
    half = crop_scale * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
    return np.concatenate([centre - half[:, None], centre + half[:, None]], axis=1)


def jitter_box(centre: np.ndarray, size: np.ndarray | float, scale: float = 1.0,
               shift: np.ndarray | float = 0.0) -> np.ndarray:
    """The crop jitter of the package (training augmentation, calibration sets, parity crops): the box (4,)
    of size ``size * scale`` centred at ``centre + shift * size``. ``size`` is a side (square boxes) or
    ``(w, h)``; ``shift`` a fraction of the size, per axis or for both. Callers draw ``scale``/``shift``."""
    c = np.asarray(centre, dtype=np.float64) + shift * size
    half = size * scale / 2
    return np.concatenate([c - half, c + half])


def crop_transforms(crop_box: np.ndarray, input_size: int, angle_deg: np.ndarray | float = 0.0) -> np.ndarray:
    """Affine transforms (B, 2, 3), image -> crop, for square crop boxes.

    ``angle_deg`` rotates the crop's content counter-clockwise on screen about the box centre.
    """
    b = _as_boxes(crop_box)
    side = b[:, 2] - b[:, 0]
    s = input_size / side
    a = np.radians(np.broadcast_to(np.asarray(angle_deg, dtype=np.float64), side.shape))
    c, sn = np.cos(a) * s, np.sin(a) * s
    centre = (b[:, :2] + b[:, 2:]) / 2
    out_c = (input_size - 1) / 2.0  # the centre of [-0.5, S - 0.5]
    m = np.empty((len(b), 2, 3))
    # screen CCW rotation in y-down coordinates: [[c, s], [-s, c]] (as cv2.getRotationMatrix2D)
    m[:, 0, 0], m[:, 0, 1] = c, sn
    m[:, 1, 0], m[:, 1, 1] = -sn, c
    m[:, 0, 2] = out_c - (c * centre[:, 0] + sn * centre[:, 1])
    m[:, 1, 2] = out_c - (-sn * centre[:, 0] + c * centre[:, 1])
    return m


def invert_transforms(m: np.ndarray) -> np.ndarray:
    """Exact inverses (B, 2, 3) of affine transforms (B, 2, 3)."""
    m = np.asarray(m, dtype=np.float64)
    a = m[:, :, :2]
    ainv = np.linalg.inv(a)
    t = -np.einsum("bij,bj->bi", ainv, m[:, :, 2])
    return np.concatenate([ainv, t[:, :, None]], axis=2)


def transform_scale(m: np.ndarray) -> np.ndarray:
    """Isotropic scale (B,) of affine transforms: sqrt(|det A|)."""
    m = np.asarray(m, dtype=np.float64)
    return np.sqrt(np.abs(np.linalg.det(m[:, :, :2])))


def transform_angle(m: np.ndarray) -> np.ndarray:
    """Counter-clockwise on-screen rotation (B,) in degrees that the transforms apply to the content."""
    m = np.asarray(m, dtype=np.float64)
    return np.degrees(np.arctan2(m[:, 0, 1], m[:, 0, 0]))


def apply_transform(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Map points (B, N, 2|3) with transforms (B, 2, 3); z (if present) is multiplied by the scale."""
    p = np.asarray(points, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    if p.ndim != 3 or p.shape[2] not in (2, 3) or m.shape != (p.shape[0], 2, 3):
        raise ValueError(f"expected points (B, N, 2|3) and transforms (B, 2, 3), got {p.shape} and {m.shape}")
    out = np.empty_like(p)
    out[..., :2] = np.einsum("bij,bnj->bni", m[:, :, :2], p[..., :2]) + m[:, None, :, 2]
    if p.shape[2] == 3:
        out[..., 2] = p[..., 2] * transform_scale(m)[:, None]
    return out


def to_crop(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Image pixels -> crop pixels."""
    return apply_transform(points, m)


def to_image(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Crop pixels -> image pixels: the exact inverse of :func:`to_crop`."""
    return apply_transform(points, invert_transforms(m))


def warp_crops(image: np.ndarray, m: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Crops (B, S, S, C) uint8 cut from one image (H, W, C) with transforms (B, 2, 3)."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.dtype != np.uint8:
        raise ValueError("expected an image as a uint8 numpy array (H, W) or (H, W, C)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    size = config.input_size
    flags = _INTERP[config.interpolation]
    border = (config.border_value,) * 3
    out = np.empty((len(m), size, size, image.shape[2]), dtype=np.uint8)
    for i, mi in enumerate(np.asarray(m, dtype=np.float64)):
        out[i] = cv2.warpAffine(image, mi, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=border)
    return out


def normalize(crops: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """BGR uint8 crops (B, S, S, 3) -> float32 model input (B, 3, S, S) in the model's channel order."""
    c = np.asarray(crops)
    if c.ndim != 4 or c.shape[3] != 3:
        raise ValueError(f"expected crops (B, S, S, 3), got shape {c.shape}")
    if config.channel_order == "RGB":
        c = c[..., ::-1]
    x = c.astype(np.float32)
    x -= np.asarray(config.mean, dtype=np.float32)
    x /= np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def denormalize(x: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Model input (B, 3, S, S) -> BGR uint8 crops (B, S, S, 3), for inspection and tests."""
    c = np.asarray(x, dtype=np.float32).transpose(0, 2, 3, 1)
    c = c * np.asarray(config.std, dtype=np.float32) + np.asarray(config.mean, dtype=np.float32)
    if config.channel_order == "RGB":
        c = c[..., ::-1]
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Prepared:
    """A batch of faces ready for inference, with what is needed to map results back."""

    inputs: np.ndarray  # (B, 3, S, S) float32
    transforms: np.ndarray  # (B, 2, 3) image -> crop
    crop_boxes: np.ndarray  # (B, 4)


def prepare(image: np.ndarray, face_boxes: np.ndarray, config: PreprocessConfig,
            angle_deg: np.ndarray | float = 0.0) -> Prepared:
    """Face boxes (B, 4) in an OpenCV BGR image -> normalised model inputs and their transforms."""
    cb = crop_boxes(face_boxes, config.crop_scale)
    m = crop_transforms(cb, config.input_size, angle_deg)
    return Prepared(inputs=normalize(warp_crops(image, m, config), config), transforms=m, crop_boxes=cb)


def rotation_to_image(rotation_crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Head rotations (B, 3, 3) predicted in rotated crops -> rotations in the image."""
    return in_plane_rotation(rotation_crop, -transform_angle(m))


def rotation_to_crop(rotation_image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Head rotations (B, 3, 3) in the image -> the rotations seen in the (possibly rotated) crops."""
    return in_plane_rotation(rotation_image, transform_angle(m))
