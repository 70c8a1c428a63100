"""What the runtime returns for a face: :class:`FaceResult`, and :class:`HeadPose` (6DoF, camera frame).

The PnP solver that fills ``head_pose_cam`` and the camera intrinsics live in :mod:`fa3d.runtime.camera`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    """Head pose in the OpenCV camera frame (x right, y down, z forward), metres.

    ``rvec``/``tvec`` as from ``cv2.solvePnP`` for the model frame ``(x right, y down, z away from the
    viewer)`` of the mean shape; ``matrix`` is the 4x4 model -> camera transform.
    """

    rvec: np.ndarray  # (3,)
    tvec: np.ndarray  # (3,) metres
    matrix: np.ndarray  # (4, 4)


@dataclass(frozen=True)
class FaceResult:
    """One face. All coordinates are 0-based image pixels of the frame that was processed.

    ``landmarks`` (68, 3) and ``dense`` (N, 3): x right, y down, z relative depth in pixels (larger =
    nearer the camera). ``yaw_pitch_roll`` (3,) degrees and ``rotation`` (3, 3) in the package pose
    convention (:mod:`fa3d.runtime.pose`). ``box`` (4,) is the tight face box the crop was made from
    (x1, y1, x2, y2). ``track_id`` is set in video mode. ``head_pose_cam`` is set when camera intrinsics
    are known.
    """

    landmarks: np.ndarray
    dense: np.ndarray
    yaw_pitch_roll: np.ndarray
    rotation: np.ndarray
    confidence: float
    box: np.ndarray
    track_id: int | None = None
    head_pose_cam: HeadPose | None = None

    def to_json(self, decimals: int = 2, dense: bool = False) -> dict:
        """A JSON-ready dict (the ``faces`` entries of fa-run's JSON lines)."""
        r = lambda a: np.round(np.asarray(a, dtype=np.float64), decimals).tolist()  # noqa: E731
        d = {"track_id": self.track_id, "box": r(self.box), "confidence": round(float(self.confidence), 4),
             "yaw_pitch_roll": r(self.yaw_pitch_roll), "rotation": np.round(self.rotation, 5).tolist(),
             "landmarks": r(self.landmarks)}
        if dense:
            d["dense"] = r(self.dense)
        if self.head_pose_cam is not None:
            d["head_pose_cam"] = {"rvec": np.round(self.head_pose_cam.rvec, 5).tolist(),
                                  "tvec_m": np.round(self.head_pose_cam.tvec, 4).tolist()}
        return d
