"""REP-155 frames of a face, and its 3D landmarks in metres, from fa3d's head pose in the camera frame.

The camera frame is the image's optical frame (x right, y down, z forward), the frame of
:class:`~fa3d.runtime.results.HeadPose`. Its model frame (the metric mean shape,
:func:`~fa3d.runtime.camera.face_model_points`) has x towards the image's right for a frontal face (the
person's left), y down and z away from the viewer (into the head). From it:

* ``face_<id>``: origin at the sellion (landmark 27, the bridge of the nose between the eyes); x out of the
  face (forward), y to the person's left, z up (REP-103 body axes).
* ``gaze_<id>``: the same origin; optical axes as seen from the face: z along the gaze (out of the face),
  x to the person's right, y down.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..camera import DEFAULT_EYE_SPAN_M, CameraIntrinsics, face_model_points
from ..results import HeadPose

SELLION = 27
#: columns: the face frame's x, y, z axes in model coordinates
FACE_AXES = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]])
#: columns: the gaze frame's x, y, z axes in model coordinates
GAZE_AXES = np.diag([-1.0, 1.0, -1.0])


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """The unit quaternion (x, y, z, w), w >= 0, of a 3x3 rotation matrix (Shepperd's method)."""
    r = np.asarray(rotation, np.float64)
    trace = np.trace(r)
    diag = np.diag(r)
    k = int(np.argmax(np.r_[trace, diag]))
    if k == 0:
        s = 2.0 * np.sqrt(max(1.0 + trace, 1e-300))
        q = np.array([(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, s / 4])
    else:
        i = k - 1
        j, m = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + r[i, i] - r[j, j] - r[m, m], 1e-300))
        q = np.empty(4)
        q[i] = s / 4
        q[j] = (r[j, i] + r[i, j]) / s
        q[m] = (r[m, i] + r[i, m]) / s
        q[3] = (r[m, j] - r[j, m]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def face_frames(pose: HeadPose, eye_span_m: float = DEFAULT_EYE_SPAN_M
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin (3,), face rotation (3, 3), gaze rotation (3, 3))`` of ``face_<id>`` and ``gaze_<id>`` in
    the camera frame, metres; the rotations' columns are the frames' axes."""
    m = np.asarray(pose.matrix, np.float64)
    r = m[:3, :3]
    origin = r @ face_model_points(eye_span_m)[SELLION] + m[:3, 3]
    return origin, r @ FACE_AXES, r @ GAZE_AXES


def landmarks_in_metres(landmarks: np.ndarray, pose: HeadPose, intrinsics: CameraIntrinsics,
                        eye_span_m: float = DEFAULT_EYE_SPAN_M) -> np.ndarray:
    """The 3D landmarks (N, 3) in the camera frame, metres: each image point (undistorted) back-projected to
    the depth of the sellion plus its own relative depth scaled to metres at that distance (weak
    perspective; fa3d's ``z`` is in pixels, larger = nearer)."""
    lm = np.asarray(landmarks, np.float64)
    origin, _, _ = face_frames(pose, eye_span_m)
    z0 = float(origin[2])
    f = (intrinsics.fx + intrinsics.fy) / 2
    depth = z0 - (lm[:, 2] - lm[SELLION, 2]) * z0 / f
    rays = cv2.undistortPoints(np.ascontiguousarray(lm[:, None, :2]), intrinsics.matrix(),
                               np.asarray(intrinsics.dist, np.float64)).reshape(-1, 2)
    return np.column_stack([rays * depth[:, None], depth])
