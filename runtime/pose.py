"""The package's one head-pose convention, and conversions between its representations.

Convention (that of 300W-LP / AFLW2000-3D ``Pose_Para`` and 3DDFA):

* Angles are ``(yaw, pitch, roll)`` in **degrees** (``Pose_Para`` stores ``pitch, yaw, roll`` in radians:
  yaw = Pose_Para[1], pitch = Pose_Para[0], roll = Pose_Para[2]).
* The rotation they define is ``R = Rx(pitch) @ Ry(yaw) @ Rz(roll)`` with

  ``Rx(a) = [[1, 0, 0], [0, cos a, sin a], [0, -sin a, cos a]]``
  ``Ry(a) = [[cos a, 0, -sin a], [0, 1, 0], [sin a, 0, cos a]]``
  ``Rz(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]``

* ``R`` maps the model frame of the frontal mean shape (x right, y up, z towards the viewer) to the
  camera-aligned frame with the same axes: ``p_view = s * R @ p_model + t``. Image landmarks
  ``(x, y, z)`` (0-based pixels, y down, z larger = nearer the camera) are that frame with y negated,
  see :func:`image_to_view` (a transform that is its own inverse).
* The 6D representation (Zhou et al., CVPR 2019) is the first two columns of ``R``, stacked as
  ``[R00, R10, R20, R01, R11, R21]``; :func:`rotation_from_6d` orthonormalises it by Gram-Schmidt.
* A horizontal image flip maps ``(yaw, pitch, roll)`` to ``(-yaw, pitch, -roll)``
  and ``R`` to ``F R F`` with ``F = diag(-1, 1, 1)``.

Everything is vectorised over leading dimensions and works in float64 internally.
"""

from __future__ import annotations

import numpy as np

from .policy import POSE_SOURCES
from .schema import mean_shape

_FLIP_X = np.diag([-1.0, 1.0, 1.0])


def _check_last(a: np.ndarray, n: int, what: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.shape[-1] != n:
        raise ValueError(f"{what}: expected a last dimension of {n}, got shape {a.shape}")
    return a


def _check_matrix(r: np.ndarray) -> np.ndarray:
    r = np.asarray(r, dtype=np.float64)
    if r.shape[-2:] != (3, 3):
        raise ValueError(f"expected rotation matrices (..., 3, 3), got shape {r.shape}")
    return r


def euler_to_matrix(ypr_deg: np.ndarray) -> np.ndarray:
    """(..., 3) yaw, pitch, roll in degrees -> (..., 3, 3) rotation matrices."""
    a = np.radians(_check_last(ypr_deg, 3, "yaw_pitch_roll"))
    yaw, pitch, roll = a[..., 0], a[..., 1], a[..., 2]
    cp, sp = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cr, sr = np.cos(roll), np.sin(roll)
    # expanded product Rx(pitch) @ Ry(yaw) @ Rz(roll)
    r = np.empty(a.shape[:-1] + (3, 3))
    r[..., 0, 0] = cy * cr
    r[..., 0, 1] = cy * sr
    r[..., 0, 2] = -sy
    r[..., 1, 0] = sp * sy * cr - cp * sr
    r[..., 1, 1] = sp * sy * sr + cp * cr
    r[..., 1, 2] = sp * cy
    r[..., 2, 0] = cp * sy * cr + sp * sr
    r[..., 2, 1] = cp * sy * sr - sp * cr
    r[..., 2, 2] = cp * cy
    return r


def matrix_to_euler(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) yaw, pitch, roll in degrees.

    Yaw lies in [-90, 90]. At the gimbal lock (|yaw| = 90) roll is set to 0 and pitch absorbs the rest.
    """
    r = _check_matrix(r)
    yaw = np.arcsin(np.clip(-r[..., 0, 2], -1.0, 1.0))
    cy = np.sqrt(r[..., 0, 0] ** 2 + r[..., 0, 1] ** 2)
    regular = cy > 1e-6
    pitch = np.where(regular, np.arctan2(r[..., 1, 2], r[..., 2, 2]),
                     np.arctan2(-r[..., 2, 1], r[..., 1, 1]))
    roll = np.where(regular, np.arctan2(r[..., 0, 1], r[..., 0, 0]), 0.0)
    return np.degrees(np.stack([yaw, pitch, roll], axis=-1))


def pose_para_to_euler(pose_para: np.ndarray) -> np.ndarray:
    """``Pose_Para`` (..., >=3: pitch, yaw, roll in radians, ...) -> (..., 3) yaw, pitch, roll in degrees."""
    p = np.asarray(pose_para, dtype=np.float64)
    if p.shape[-1] < 3:
        raise ValueError(f"Pose_Para needs at least 3 values (pitch, yaw, roll), got shape {p.shape}")
    return np.degrees(np.stack([p[..., 1], p[..., 0], p[..., 2]], axis=-1))


def euler_to_pose_para(ypr_deg: np.ndarray) -> np.ndarray:
    """(..., 3) yaw, pitch, roll in degrees -> (..., 3) pitch, yaw, roll in radians (``Pose_Para[:3]``)."""
    a = np.radians(_check_last(ypr_deg, 3, "yaw_pitch_roll"))
    return np.stack([a[..., 1], a[..., 0], a[..., 2]], axis=-1)


def matrix_to_6d(r: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns, column after column."""
    r = _check_matrix(r)
    return np.concatenate([r[..., :, 0], r[..., :, 1]], axis=-1)


def rotation_from_6d(d6: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt; any non-degenerate 6-vector gives a proper rotation."""
    d6 = _check_last(d6, 6, "6D rotation")
    a1, a2 = d6[..., 0:3], d6[..., 3:6]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    if np.any(n1 < 1e-12):
        raise ValueError("degenerate 6D rotation: first column is zero")
    b1 = a1 / n1
    a2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    n2 = np.linalg.norm(a2, axis=-1, keepdims=True)
    if np.any(n2 < 1e-12):
        raise ValueError("degenerate 6D rotation: columns are parallel")
    b2 = a2 / n2
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-1)


def euler_to_6d(ypr_deg: np.ndarray) -> np.ndarray:
    return matrix_to_6d(euler_to_matrix(ypr_deg))


def euler_from_6d(d6: np.ndarray) -> np.ndarray:
    return matrix_to_euler(rotation_from_6d(d6))


def mirror_rotation(r: np.ndarray) -> np.ndarray:
    """The rotation of a face seen in a horizontally flipped image: ``F R F``."""
    r = _check_matrix(r)
    return _FLIP_X @ r @ _FLIP_X


def mirror_euler(ypr_deg: np.ndarray) -> np.ndarray:
    a = _check_last(ypr_deg, 3, "yaw_pitch_roll").copy()
    a[..., 0] *= -1
    a[..., 2] *= -1
    return a


def image_to_view(points: np.ndarray) -> np.ndarray:
    """Image landmarks (x, y down, z near) <-> view frame (x right, y up, z towards the viewer).

    The map negates y, so it is its own inverse; pixel offsets are kept (no origin change).
    """
    p = np.array(points, dtype=np.float64, copy=True)
    if p.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) points, got shape {p.shape}")
    p[..., 1] *= -1
    return p


def in_plane_rotation(r: np.ndarray, angle_deg: float | np.ndarray) -> np.ndarray:
    """Rotation of a face after its *image* is rotated by ``angle_deg`` counter-clockwise on screen.

    An image rotated counter-clockwise (as seen on screen, y down) by ``a`` rotates the view frame
    (y up) about its z axis by ``+a``: ``R' = Rz_view(a) @ R``. In this convention that is a change of
    roll by ``-a`` for a frontal face.
    """
    r = _check_matrix(r)
    a = np.radians(np.asarray(angle_deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    rz = np.zeros(np.shape(a) + (3, 3))
    rz[..., 0, 0], rz[..., 0, 1] = c, -s
    rz[..., 1, 0], rz[..., 1, 1] = s, c
    rz[..., 2, 2] = 1.0
    return rz @ r


def fit_similarity(model: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares ``target ~ s * R @ model + t`` (Umeyama) for (N, 3) point sets.

    Returns ``(R, s, t)`` with ``R`` a proper rotation. Both sets must be in the same handedness
    (convert image landmarks with :func:`image_to_view` first).
    """
    a = np.asarray(model, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"expected two (N, 3) point sets of the same shape, got {a.shape} and {b.shape}")
    ma, mb = a.mean(0), b.mean(0)
    a0, b0 = a - ma, b - mb
    u, sv, vt = np.linalg.svd(b0.T @ a0)
    d = np.sign(np.linalg.det(u @ vt))
    dm = np.diag([1.0, 1.0, d])
    rot = u @ dm @ vt
    var_a = (a0 ** 2).sum()
    if var_a <= 0:
        raise ValueError("degenerate model point set")
    scale = float((sv * np.diag(dm)).sum() / var_a)
    t = mb - scale * rot @ ma
    return rot, scale, t


def geodesic_deg(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Angle in degrees of ``r1^T r2`` (the rotation between them)."""
    r1, r2 = _check_matrix(r1), _check_matrix(r2)
    tr = np.einsum("...ij,...ij->...", r1, r2)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def rotation_from_landmarks(landmarks: np.ndarray, model_shape: np.ndarray | None = None) -> np.ndarray:
    """Head rotations (..., 3, 3) fitted to 3D image landmarks (..., 68, 3).

    The rotation of the least-squares similarity (:func:`fit_similarity`) from the frontal mean shape
    (``model_shape``, model frame; default :func:`fa3d.runtime.schema.mean_shape`) to the landmarks in the
    view frame (:func:`image_to_view`): the pose that the predicted 3D shape itself implies.
    """
    if model_shape is None:
        model_shape = mean_shape()
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim < 2 or lm.shape[-2:] != np.shape(model_shape):
        raise ValueError(f"expected (..., {np.shape(model_shape)[0]}, 3) landmarks, got {lm.shape}")
    flat = image_to_view(lm.reshape(-1, *lm.shape[-2:]))
    out = np.stack([fit_similarity(model_shape, p)[0] for p in flat]) if len(flat) else np.zeros((0, 3, 3))
    return out.reshape(*lm.shape[:-2], 3, 3)


def blend_rotations(r1: np.ndarray, r2: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """The chordal mean of two rotations: ``weight * r1 + (1 - weight) * r2`` projected onto SO(3) by SVD."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    m = weight * _check_matrix(r1) + (1.0 - weight) * _check_matrix(r2)
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= d[..., None]
    return u @ vt


def reported_rotation(source: str, head: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The rotations (..., 3, 3) reported for ``source`` (:data:`fa3d.runtime.policy.POSE_SOURCES`): the pose
    head's ``head``, the fit to the 3D ``landmarks`` (..., 68, 3) (:func:`rotation_from_landmarks`), or their
    chordal mean (:func:`blend_rotations`). ``head`` and ``landmarks`` in the same frame (image or crop)."""
    if source not in POSE_SOURCES:
        raise ValueError(f"pose source must be one of {POSE_SOURCES}, got {source!r}")
    if source == "head":
        return head
    fitted = rotation_from_landmarks(landmarks)
    return fitted if source == "landmarks" else blend_rotations(head, fitted)
