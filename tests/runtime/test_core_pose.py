"""The pose convention: conversions in every direction, and agreement with real AFLW2000-3D labels."""

import numpy as np
import pytest
import scipy.io as sio

from fa3d.runtime import pose, schema


def _explicit(pitch, yaw, roll):
    """Rx(pitch) @ Ry(yaw) @ Rz(roll) written out factor by factor (radians), independent of pose.py."""
    cx, sx, cy, sy, cz, sz = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rx @ ry @ rz


def _random_ypr(n, seed=0, yaw_limit=89.0):
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-yaw_limit, yaw_limit, n), rng.uniform(-89, 89, n), rng.uniform(-179, 179, n)], 1)


def test_matrix_matches_the_documented_product():
    ypr = _random_ypr(20)
    r = pose.euler_to_matrix(ypr)
    for a, m in zip(ypr, r):
        yaw, pitch, roll = np.radians(a)
        np.testing.assert_allclose(m, _explicit(pitch, yaw, roll), atol=1e-12)


def test_matrices_are_proper_rotations():
    r = pose.euler_to_matrix(_random_ypr(50, 1))
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_euler_round_trip():
    ypr = _random_ypr(200, 2)
    np.testing.assert_allclose(pose.matrix_to_euler(pose.euler_to_matrix(ypr)), ypr, atol=1e-8)


def test_gimbal_lock_still_gives_the_same_rotation():
    ypr = np.array([[90.0, 20.0, 10.0], [-90.0, -30.0, 5.0]])
    back = pose.matrix_to_euler(pose.euler_to_matrix(ypr))
    np.testing.assert_allclose(pose.euler_to_matrix(back), pose.euler_to_matrix(ypr), atol=1e-6)


def test_6d_round_trip_and_orthonormalisation():
    r = pose.euler_to_matrix(_random_ypr(100, 3))
    d6 = pose.matrix_to_6d(r)
    assert d6.shape == (100, 6)
    np.testing.assert_allclose(d6[:, :3], r[:, :, 0])
    np.testing.assert_allclose(pose.rotation_from_6d(d6), r, atol=1e-12)
    noisy = d6 * 3.0 + np.random.default_rng(0).normal(0, 0.05, d6.shape)
    rn = pose.rotation_from_6d(noisy)
    np.testing.assert_allclose(np.linalg.det(rn), 1.0, atol=1e-9)
    assert np.all(pose.geodesic_deg(rn, r) < 5.0)
    np.testing.assert_allclose(pose.euler_from_6d(pose.euler_to_6d(_random_ypr(5, 4))), _random_ypr(5, 4), atol=1e-8)
    with pytest.raises(ValueError, match="degenerate"):
        pose.rotation_from_6d(np.zeros(6))


def test_pose_para_order():
    ypr = np.array([30.0, -10.0, 5.0])
    pp = pose.euler_to_pose_para(ypr)
    np.testing.assert_allclose(pp, np.radians([-10.0, 30.0, 5.0]))  # pitch, yaw, roll in radians
    np.testing.assert_allclose(pose.pose_para_to_euler(np.r_[pp, 1.0, 2.0, 3.0, 0.001]), ypr)


def test_mirror_is_consistent_between_euler_and_matrix():
    ypr = _random_ypr(30, 5)
    np.testing.assert_allclose(pose.mirror_rotation(pose.euler_to_matrix(ypr)),
                               pose.euler_to_matrix(pose.mirror_euler(ypr)), atol=1e-12)


def test_mirrored_rotation_explains_the_mirrored_landmarks():
    """Flip a posed mean shape's image: the mirrored pose fits the flipped, re-ordered landmarks."""
    ypr = np.array([40.0, 10.0, -15.0])
    r = pose.euler_to_matrix(ypr)
    pts = pose.image_to_view(schema.mean_shape() @ r.T * 50 + [100, -100, 0])  # image frame, y down
    flipped = schema.mirror_landmarks(pts, image_width=200)
    r_fit, _, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(flipped))
    assert pose.geodesic_deg(r_fit, pose.euler_to_matrix(pose.mirror_euler(ypr))) < 1.0
    assert pose.geodesic_deg(r_fit, r) > 20.0


def test_in_plane_rotation_changes_roll_by_minus_angle():
    r = pose.euler_to_matrix([0.0, 0.0, 10.0])
    np.testing.assert_allclose(pose.matrix_to_euler(pose.in_plane_rotation(r, 25.0)), [0.0, 0.0, -15.0], atol=1e-9)


def test_fit_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(68, 3))
    r = pose.euler_to_matrix([35.0, -20.0, 12.0])
    b = 2.5 * a @ r.T + [1.0, -2.0, 3.0]
    r_fit, s, t = pose.fit_similarity(a, b)
    np.testing.assert_allclose(r_fit, r, atol=1e-9)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(t, [1.0, -2.0, 3.0], atol=1e-9)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="last dimension of 3"):
        pose.euler_to_matrix([1.0, 2.0])
    with pytest.raises(ValueError, match="3, 3"):
        pose.matrix_to_euler(np.eye(4))


def _aflw2000(format_samples, name):
    m = sio.loadmat(str(format_samples / "aflw2000_3d" / f"{name}.mat"))
    pts = m["pt3d_68"].T.astype(np.float64)
    pts[:, :2] -= 1.0  # MATLAB 1-based -> 0-based pixels
    return pts, m["Pose_Para"][0]


@pytest.mark.data
@pytest.mark.parametrize("name", ["image00002", "image00004", "image00006"])
def test_pose_para_rotation_agrees_with_real_pt3d_68(format_samples, name):
    """The rotation from Pose_Para, applied to the frontal mean shape, explains the sample's pt3d_68."""
    pts, pose_para = _aflw2000(format_samples, name)
    r = pose.euler_to_matrix(pose.pose_para_to_euler(pose_para))
    r_fit, _, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(pts))
    assert pose.geodesic_deg(r_fit, r) < 6.0
    # the plausible wrong conventions are far off for these non-frontal faces
    assert pose.geodesic_deg(r_fit, r.T) > 20.0
    # and the posed mean shape lands on the points (residual small against the face size)
    _, s, t = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(pts))
    pred = pose.image_to_view(s * schema.mean_shape() @ r.T + t)
    size = np.sqrt(np.prod(pts[:, :2].max(0) - pts[:, :2].min(0)))
    assert np.median(np.linalg.norm(pred[:, :2] - pts[:, :2], axis=1)) / size < 0.08


def test_rotation_from_landmarks_recovers_the_pose_of_a_posed_mean_shape():
    m = schema.mean_shape().astype(np.float64)
    ypr = np.array([[30.0, -10.0, 5.0], [-70.0, 25.0, -15.0]])
    r = pose.euler_to_matrix(ypr)
    lm = pose.image_to_view(np.einsum("bij,nj->bni", r, m) * 40.0 + np.array([60.0, 50.0, 3.0]))
    fitted = pose.rotation_from_landmarks(lm)
    assert fitted.shape == (2, 3, 3)
    np.testing.assert_allclose(pose.geodesic_deg(fitted, r), 0.0, atol=1e-4)  # arccos near 1
    with pytest.raises(ValueError, match="68, 3"):
        pose.rotation_from_landmarks(np.zeros((2, 21, 3)))


def test_blend_rotations_is_the_midpoint_about_one_axis():
    a = pose.euler_to_matrix(np.array([10.0, 0.0, 0.0]))
    b = pose.euler_to_matrix(np.array([40.0, 0.0, 0.0]))
    np.testing.assert_allclose(pose.matrix_to_euler(pose.blend_rotations(a, b)), [25.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(pose.blend_rotations(a, b, weight=1.0), a, atol=1e-12)
    with pytest.raises(ValueError, match="weight"):
        pose.blend_rotations(a, b, weight=2.0)
