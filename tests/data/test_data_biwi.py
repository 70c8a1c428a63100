"""BIWI: a fixture in the exact text format, the axis mapping, the 70/30 split by sequence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime import pose
from fa3d.data.datasets.biwi import Biwi, biwi_to_ypr, list_biwi, read_biwi_pose


def _literature_angles(r_biwi: np.ndarray) -> np.ndarray:
    """The decomposition the head-pose literature applies to BIWI's matrices (yaw, pitch, roll deg)."""
    m = r_biwi.T
    roll = -np.degrees(np.arctan2(m[1, 0], m[0, 0]))
    yaw = -np.degrees(np.arctan2(-m[2, 0], np.sqrt(m[2, 1] ** 2 + m[2, 2] ** 2)))
    pitch = np.degrees(np.arctan2(m[2, 1], m[2, 2]))
    return np.array([yaw, pitch, roll])


def _write_pose(path, r, t=(10.0, -20.0, 900.0)):
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) + " " for row in r)
    path.write_text(rows + "\n\n" + " ".join(f"{v:.6f}" for v in t) + " \n")


def test_axis_mapping_matches_literature_decomposition():
    rng = np.random.default_rng(1)
    for _ in range(100):
        q = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        q *= np.sign(np.linalg.det(q))
        ypr = biwi_to_ypr(q)
        if abs(ypr[0]) > 80:
            continue
        np.testing.assert_allclose(ypr, _literature_angles(q), atol=1e-6)


def test_fixture_round_trip(tmp_path):
    seq = tmp_path / "hpdb" / "01"
    seq.mkdir(parents=True)
    want = np.array([25.0, -10.0, 5.0])
    f = np.diag([-1.0, 1.0, 1.0])
    r_biwi = f @ pose.euler_to_matrix(want) @ f
    _write_pose(seq / "frame_00003_pose.txt", r_biwi)
    cv2.imwrite(str(seq / "frame_00003_rgb.png"), np.zeros((48, 64, 3), np.uint8))
    rot, t = read_biwi_pose(seq / "frame_00003_pose.txt")
    np.testing.assert_allclose(rot, r_biwi, atol=1e-6)
    np.testing.assert_allclose(t, [10, -20, 900])
    ds = Biwi(tmp_path)
    assert len(ds) == 1 and ds.name(0) == "01/frame_00003_rgb.png"
    s = ds[0]
    np.testing.assert_allclose(s.ypr, want, atol=1e-4)
    assert s.image.shape == (48, 64, 3)


def test_split70_by_sequence(tmp_path):
    for k in range(1, 25):
        d = tmp_path / "hpdb" / f"{k:02d}"
        d.mkdir(parents=True)
        _write_pose(d / "frame_00000_pose.txt", np.eye(3))
        (d / "frame_00000_rgb.png").write_bytes(b"")
    train = list_biwi(tmp_path, "split70", "train")
    test = list_biwi(tmp_path, "split70", "test")
    assert len(train) == 17 and len(test) == 7
    assert {p.parent.name for p in train}.isdisjoint({p.parent.name for p in test})
    assert len(list_biwi(tmp_path, "all")) == 24


def test_bad_pose_file(tmp_path):
    p = tmp_path / "frame_00000_pose.txt"
    p.write_text("1 0 0\n0 1 0\n\n1 2 3\n")
    with pytest.raises(ValueError, match="frame_00000_pose.txt.*3 rotation rows"):
        read_biwi_pose(p)
    p.write_text("2 0 0\n0 1 0\n0 0 1\n\n1 2 3\n")
    with pytest.raises(ValueError, match="not a rotation"):
        read_biwi_pose(p)
