"""300W-LP loader: the real sample, and a savemat fixture of the landmarks tree (absent from our data)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from fa3d.runtime import schema
from fa3d.data.datasets.w300lp import W300LP, read_300wlp_item

STEM = "IBUG_image_008_1_0"


@pytest.fixture()
def lp_root(format_samples, tmp_path):
    src = format_samples / "300w_lp"
    for folder in ("IBUG", "IBUG_Flip"):
        (tmp_path / folder).mkdir()
        for ext in (".jpg", ".mat"):
            (tmp_path / folder / f"{STEM}{ext}").symlink_to(src / f"{STEM}{ext}")
    return tmp_path


def test_real_sample_uses_pt2d_0_based(lp_root, format_samples):
    s = read_300wlp_item(lp_root, "IBUG", STEM)
    raw = scipy.io.loadmat(str(format_samples / "300w_lp" / f"{STEM}.mat"))
    np.testing.assert_allclose(s.landmarks[:, :2], raw["pt2d"].T - 1.0, atol=1e-4)
    assert s.ypr[0] == pytest.approx(np.degrees(raw["Pose_Para"][0, 1]), abs=1e-4)  # yaw = Pose_Para[1]
    assert s.ypr[1] == pytest.approx(np.degrees(raw["Pose_Para"][0, 0]), abs=1e-4)
    # estimated depth: yaw -44 turns the nose to the image's right, so the jaw end on the image's left
    # (point 0) comes nearer the camera than point 16
    assert s.ypr[0] < -30
    assert s.landmarks[0, 2] > s.landmarks[16, 2] + 20
    assert len(W300LP(lp_root, folders=("IBUG", "IBUG_Flip"))) == 2


def test_landmarks_tree_pts_3d_preferred_and_mirrored_for_flip(lp_root):
    pts3d = np.stack([np.linspace(100, 300, 68), np.linspace(150, 350, 68)], 1)  # (68, 2) float64, 1-based
    (lp_root / "landmarks" / "IBUG").mkdir(parents=True)
    scipy.io.savemat(lp_root / "landmarks" / "IBUG" / f"{STEM}_pts.mat",
                     {"pts_2d": pts3d + 5, "pts_3d": pts3d})
    s = read_300wlp_item(lp_root, "IBUG", STEM)
    np.testing.assert_allclose(s.landmarks[:, :2], pts3d - 1.0, atol=1e-4)
    f = read_300wlp_item(lp_root, "IBUG_Flip", STEM)
    w = f.image.shape[1]
    expect = schema.mirror_landmarks(pts3d - 1.0, w)
    np.testing.assert_allclose(f.landmarks[:, :2], expect, atol=1e-4)


def test_errors_name_the_file(lp_root, tmp_path):
    bad = tmp_path / "bad"
    (bad / "AFW").mkdir(parents=True)
    shutil.copyfile(lp_root / "IBUG" / f"{STEM}.jpg", bad / "AFW" / "x.jpg")
    scipy.io.savemat(bad / "AFW" / "x.mat", {"Pose_Para": np.zeros((1, 7), np.float32)})
    with pytest.raises(ValueError, match=r"x\.mat.*pt2d"):
        read_300wlp_item(bad, "AFW", "x")
    with pytest.raises(FileNotFoundError, match="HELEN"):
        W300LP(bad, folders=("AFW", "HELEN"))
