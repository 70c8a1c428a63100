"""AFLW2000-3D loader on the real format samples and on savemat fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from fa3d.runtime import pose, schema
from fa3d.data.datasets.aflw2000 import AFLW2000, read_aflw2000_labels


def test_real_samples_are_converted_to_0_based_and_agree_with_pose(format_samples):
    root = format_samples / "aflw2000_3d"
    ds = AFLW2000(root)
    assert len(ds) == 3
    for s in ds:
        raw = scipy.io.loadmat(str(root / s.name.replace(".jpg", ".mat")))
        np.testing.assert_allclose(s.landmarks[:, :2], raw["pt3d_68"][:2].T - 1.0, atol=1e-5)
        np.testing.assert_allclose(s.landmarks[:, 2], raw["pt3d_68"][2], atol=1e-5)
        # the rotation fitted to the converted points agrees with Pose_Para's rotation
        r, _, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(s.landmarks))
        assert pose.geodesic_deg(r, pose.euler_to_matrix(s.ypr)) < 6.0
        assert s.ypr[0] == pytest.approx(np.degrees(raw["Pose_Para"][0, 1]), abs=1e-4)
        h, w = s.image.shape[:2]
        # the eyes and mouth lie inside the image (the jaw may leave it on profiles)
        inner = s.landmarks[36:68, :2]
        assert (inner >= 0).all() and (inner[:, 0] < w).all() and (inner[:, 1] < h).all()
        np.testing.assert_allclose(s.box, [*s.landmarks[:, :2].min(0), *s.landmarks[:, :2].max(0)], atol=1e-4)


def test_fixture_and_errors(tmp_path):
    pts = np.zeros((3, 68), np.float32)
    pts[0] = np.arange(68) + 1.0
    pts[1] = 11.0
    scipy.io.savemat(tmp_path / "image00001.mat", {"pt3d_68": pts, "Pose_Para": np.zeros((1, 7), np.float32)})
    lm, ypr = read_aflw2000_labels(tmp_path / "image00001.mat")
    assert lm[0, 0] == 0.0 and lm[67, 0] == 67.0 and lm[5, 1] == 10.0
    np.testing.assert_array_equal(ypr, 0)
    scipy.io.savemat(tmp_path / "image00003.mat", {"pt3d_68": pts})
    with pytest.raises(ValueError, match=r"image00003\.mat.*Pose_Para"):
        read_aflw2000_labels(tmp_path / "image00003.mat")
    scipy.io.savemat(tmp_path / "image00005.mat", {"pt3d_68": pts[:2], "Pose_Para": np.zeros((1, 7))})
    with pytest.raises(ValueError, match=r"image00005\.mat.*pt3d_68.*shape"):
        read_aflw2000_labels(tmp_path / "image00005.mat")
    with pytest.raises(ValueError, match="not an AFLW2000-3D folder"):
        AFLW2000(tmp_path)  # .mat files but no images


def test_depth_estimate_from_mean_shape_matches_real_depth(format_samples):
    """The z that 2D-only loaders estimate (300W-LP, .pts) correlates with AFLW2000-3D's real z."""
    from fa3d.data.datasets._io import depth_from_mean_shape

    for s in AFLW2000(format_samples / "aflw2000_3d"):
        xy = s.landmarks[:, :2].astype(np.float64)
        real = s.landmarks[:, 2]
        for est in (depth_from_mean_shape(xy, pose.euler_to_matrix(s.ypr)), depth_from_mean_shape(xy)):
            assert np.corrcoef(real, est[:, 2])[0, 1] > 0.98
            np.testing.assert_array_equal(est[:, :2], xy)
