"""The camera: intrinsics and the 6DoF head pose in the camera frame by PnP against the metric mean shape."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .jsonfile import JsonFileError, read_json_file
from .results import HeadPose
from .schema import mean_shape

#: metric size of the PnP face model: distance between the outer eye corners (points 36 and 45), metres.
#: 90 mm is a typical adult biocular width (ex-ex); a different person shifts the distance, not the rotation.
DEFAULT_EYE_SPAN_M = 0.090
#: how many distortion coefficients OpenCV accepts (none, or 4, 5, 8, 12 or 14)
DIST_COUNTS = (0, 4, 5, 8, 12, 14)


@dataclass(frozen=True)
class CameraIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        """Checked when made (and so when read from a file): PnP never meets a configuration it rejects, so
        a bad calibration is one clear error at start-up, never a frame counted as bad."""
        vals = {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}
        for name, v in vals.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ValueError(f"camera intrinsics: {name} must be a finite number, got {v!r}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"camera intrinsics: focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if not isinstance(self.dist, tuple) or len(self.dist) not in DIST_COUNTS:
            n = len(self.dist) if isinstance(self.dist, (tuple, list)) else type(self.dist).__name__
            raise ValueError(f"camera intrinsics: dist needs {', '.join(map(str, DIST_COUNTS[1:]))} distortion "
                             f"coefficients (OpenCV's k1, k2, p1, p2[, k3[, k4, k5, k6[, s1..s4[, tx, ty]]]]) or "
                             f"none, got {n}")
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                   and math.isfinite(v) for v in self.dist):
            raise ValueError(f"camera intrinsics: dist must hold finite numbers, got {list(self.dist)}")

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "CameraIntrinsics":
        """A guess from the horizontal field of view (square pixels, principal point at the centre)."""
        if not 1 < hfov_deg < 179:
            raise ValueError(f"field of view must be in (1, 179) degrees, got {hfov_deg}")
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(fx=f, fy=f, cx=(width - 1) / 2, cy=(height - 1) / 2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CameraIntrinsics":
        """JSON ``{"fx": .., "fy": .., "cx": .., "cy": .., "dist": [k1, k2, p1, p2, k3] (optional)}``, read
        within bounds (:mod:`fa3d.runtime.jsonfile`) and checked at once (ValueError naming the file)."""
        path = Path(path)
        try:
            d = read_json_file(path)
            if not isinstance(d, dict):
                raise ValueError(f"expected a JSON object, got {type(d).__name__}")
            dist = d.get("dist", ())
            if not isinstance(dist, list) and dist != ():
                raise ValueError(f"dist must be a list of numbers, got {dist!r}")
            return cls(fx=d["fx"], fy=d["fy"], cx=d["cx"], cy=d["cy"], dist=tuple(dist))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: intrinsics file not found") from None
        except JsonFileError as e:
            raise ValueError(f"intrinsics: {e}") from None
        except KeyError as e:
            raise ValueError(f"{path}: intrinsics need JSON with numbers fx, fy, cx, cy (and optional dist): "
                             f"the key {e.args[0]!r} is missing") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def face_model_points(eye_span_m: float = DEFAULT_EYE_SPAN_M) -> np.ndarray:
    """The mean shape (68, 3) in metres, in the OpenCV object frame (x right, y down, z away from the viewer)."""
    m = np.asarray(mean_shape(), dtype=np.float64)
    m = m * (eye_span_m / np.linalg.norm(m[45] - m[36]))
    return m * np.array([1.0, -1.0, -1.0])


def solve_head_pose(landmarks: np.ndarray, intrinsics: CameraIntrinsics,
                    eye_span_m: float = DEFAULT_EYE_SPAN_M) -> HeadPose:
    """6DoF head pose in the camera frame from the 2D landmarks by PnP against the metric mean shape.

    EPnP gives the start, Levenberg-Marquardt (``SOLVEPNP_ITERATIVE``) refines it. Raises ValueError on failure.
    """
    obj = face_model_points(eye_span_m)
    img = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float64)[:, :2])
    k, dist = intrinsics.matrix(), np.asarray(intrinsics.dist, dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, k, dist, rvec=rvec, tvec=tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(tvec).all():
        raise ValueError("PnP failed for these landmarks")
    rmat, _ = cv2.Rodrigues(rvec)
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rmat, tvec.ravel()
    return HeadPose(rvec=rvec.ravel(), tvec=tvec.ravel(), matrix=t)
