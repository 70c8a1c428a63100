"""Our labelled-folder format: round trip and validation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.data.datasets.labelled import FORMAT_VERSION, LabelledFolder, read_labelled, write_labelled


def _write(tmp_path, n=2, **over):
    (tmp_path / "images").mkdir(exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(tmp_path / "images" / f"f{i}.png"), np.full((32, 40, 3), 50 + i, np.uint8))
    rng = np.random.default_rng(0)
    lm = rng.uniform(5, 25, (n, 68, 3))
    kw = dict(teacher="mediapipe-facemesh mediapipe==0.10.21", image_dir="images",
              names=[f"f{i}.png" for i in range(n)], lm68=lm, ypr=rng.normal(size=(n, 3)),
              dense=rng.uniform(5, 25, (n, 468, 3)), confidence=[0.9, 0.4][:n],
              boxes=np.concatenate([lm[:, :, :2].min(1), lm[:, :, :2].max(1)], 1), failed=["nothing.png"])
    kw.update(over)
    return write_labelled(tmp_path, **kw), kw


def test_round_trip(tmp_path):
    path, kw = _write(tmp_path)
    lab = read_labelled(tmp_path)
    assert lab.teacher == kw["teacher"] and lab.image_dir == tmp_path / "images"
    np.testing.assert_allclose(lab.lm68, kw["lm68"], atol=1e-5)
    assert lab.dense.shape == (2, 468, 3) and list(lab.failed) == ["nothing.png"]
    ds = LabelledFolder(tmp_path, weight=0.3, min_confidence=0.5)
    assert len(ds) == 1
    s = ds[0]
    assert s.name == "f0.png" and s.image.shape == (32, 40, 3) and s.landmarks_weight == 0.3
    assert s.dense.shape == (468, 3) and s.source.startswith("labelled:mediapipe")
    with np.load(path) as z:
        assert int(z["format_version"]) == FORMAT_VERSION


def test_validation_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="fa-label"):
        read_labelled(tmp_path)
    path, kw = _write(tmp_path)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["format_version"] = np.int64(99)
    np.savez(path, **d)
    with pytest.raises(ValueError, match="format_version 99"):
        read_labelled(tmp_path)
    d["format_version"] = np.int64(FORMAT_VERSION)
    d["lm68"] = d["lm68"][:, :5]
    np.savez(path, **d)
    with pytest.raises(ValueError, match=r"labels\.npz: lm68 must be float32"):
        read_labelled(tmp_path)
    del d["dense"]
    np.savez(path, **d)
    with pytest.raises(ValueError, match="missing keys.*dense"):
        read_labelled(tmp_path)
