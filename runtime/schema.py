"""The landmark schema: the 68 iBUG points, their groups, the mirror permutation and the AFLW-21 map.

Indices are 0-based throughout. "Left" and "right" are the *image's* left and right for a frontal
face (iBUG's convention: point 0 is the jaw end on the image's left).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np

NUM_LANDMARKS = 68
SCHEMA_NAME = "ibug68"

#: group name -> index range (start inclusive, stop exclusive)
GROUPS: dict[str, range] = {
    "jaw": range(0, 17),
    "left_brow": range(17, 22),
    "right_brow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_base": range(31, 36),
    "left_eye": range(36, 42),
    "right_eye": range(42, 48),
    "outer_mouth": range(48, 60),
    "inner_mouth": range(60, 68),
}

#: coarse groups as the literature names them
COARSE_GROUPS: dict[str, tuple[str, ...]] = {
    "jaw": ("jaw",),
    "brows": ("left_brow", "right_brow"),
    "nose": ("nose_bridge", "nose_base"),
    "eyes": ("left_eye", "right_eye"),
    "mouth": ("outer_mouth", "inner_mouth"),
}

#: polylines for drawing: (group, closed)
CONTOURS: tuple[tuple[str, bool], ...] = (
    ("jaw", False), ("left_brow", False), ("right_brow", False), ("nose_bridge", False),
    ("nose_base", False), ("left_eye", True), ("right_eye", True), ("outer_mouth", True),
    ("inner_mouth", True),
)


def _names() -> tuple[str, ...]:
    names = [f"jaw_{i:02d}" for i in range(17)]
    names += [f"left_brow_{i}" for i in range(5)] + [f"right_brow_{i}" for i in range(5)]
    names += [f"nose_bridge_{i}" for i in range(4)]
    names += ["nose_base_left", "nose_base_left_mid", "nose_base_centre", "nose_base_right_mid",
              "nose_base_right"]
    eye = ["outer_corner", "upper_outer", "upper_inner", "inner_corner", "lower_inner", "lower_outer"]
    names += [f"left_eye_{n}" for n in eye]
    # the right eye runs from its inner corner (42) to its outer corner (45)
    names += [f"right_eye_{n}" for n in
              ["inner_corner", "upper_inner", "upper_outer", "outer_corner", "lower_outer", "lower_inner"]]
    names += ["mouth_left_corner"] + [f"upper_lip_outer_{i}" for i in range(1, 6)]
    names += ["mouth_right_corner"] + [f"lower_lip_outer_{i}" for i in range(1, 6)]
    names += ["mouth_inner_left"] + [f"upper_lip_inner_{i}" for i in range(1, 4)]
    names += ["mouth_inner_right"] + [f"lower_lip_inner_{i}" for i in range(1, 4)]
    return tuple(names)


NAMES: tuple[str, ...] = _names()


def _mirror() -> np.ndarray:
    """For a horizontally flipped image, point i of the flipped face is point MIRROR[i] of the original."""
    pairs = [(i, 16 - i) for i in range(17)]
    pairs += [(17 + i, 26 - i) for i in range(5)]
    pairs += [(27 + i, 27 + i) for i in range(4)]
    pairs += [(31 + i, 35 - i) for i in range(5)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (51, 51), (55, 59), (56, 58), (57, 57)]
    pairs += [(60, 64), (61, 63), (62, 62), (65, 67), (66, 66)]
    perm = np.full(NUM_LANDMARKS, -1, dtype=np.int64)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    assert (perm >= 0).all()
    return perm


MIRROR: np.ndarray = _mirror()
MIRROR.setflags(write=False)

#: AFLW 21-point index -> iBUG 68 index, for the points with a checked correspondence
#: (shared/data/README.md). The chin (20 -> 8) is loose: AFLW marks the chin tip, iBUG the jaw's lowest point.
AFLW21_TO_IBUG68: dict[int, int] = {6: 36, 8: 39, 9: 42, 11: 45, 14: 30, 17: 48, 19: 54, 20: 8}

#: AFLW-21 point names in the dataset's order
AFLW21_NAMES: tuple[str, ...] = (
    "left_brow_left", "left_brow_centre", "left_brow_right",
    "right_brow_left", "right_brow_centre", "right_brow_right",
    "left_eye_left", "left_eye_centre", "left_eye_right",
    "right_eye_left", "right_eye_centre", "right_eye_right",
    "left_ear", "nose_left", "nose_tip", "nose_right", "right_ear",
    "mouth_left", "mouth_centre", "mouth_right", "chin",
)


def mirror_landmarks(points: np.ndarray, image_width: float) -> np.ndarray:
    """Landmarks (..., 68, 2|3) in 0-based pixels of an image flipped horizontally (x -> W - 1 - x).

    The points are reordered with :data:`MIRROR` so that index i keeps its meaning; z is unchanged.
    """
    points = np.asarray(points)
    if points.shape[-2] != NUM_LANDMARKS:
        raise ValueError(f"expected (..., {NUM_LANDMARKS}, 2|3) landmarks, got shape {points.shape}")
    out = points[..., MIRROR, :].copy()
    out[..., 0] = (image_width - 1) - out[..., 0]
    return out


@lru_cache(maxsize=1)
def mean_shape() -> np.ndarray:
    """The frontal mean shape (68, 3) in the model frame: x right, y up, z towards the viewer.

    Centred at the origin with unit RMS radius. Derived once, offline, from the teacher labels of the
    aflw19k training split de-rotated with the package's pose convention and made left-right symmetric;
    a 68x3 statistic, no image data.
    """
    path = resources.files("fa3d.runtime").joinpath("assets/mean_shape_68.npy")
    with resources.as_file(path) as p:
        shape = np.load(p, allow_pickle=False)
    if shape.shape != (NUM_LANDMARKS, 3) or shape.dtype != np.float32:
        raise ValueError(f"{path}: expected a float32 (68, 3) mean shape, got {shape.dtype} {shape.shape}; "
                         "reinstall fa3d")
    shape = shape.copy()
    shape.setflags(write=False)
    return shape
