"""AFLW crops (aflw19k layout) and the default model's training mix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime import preprocess
from fa3d.data.datasets.aflw import AflwCrops, protocol_box, read_aflw_labels
from fa3d.data.datasets.labelled import write_labelled
from fa3d.data.datasets.mix import MixWeights, load_aflw19k


def _fixture(root, n=4):
    (root / "images").mkdir(parents=True)
    names = np.array([f"image{i:05d}.jpg" for i in range(n)])
    for nm in names:
        cv2.imwrite(str(root / "images" / nm), np.full((120, 120, 3), 90, np.uint8))
    rng = np.random.default_rng(0)
    pts = rng.uniform(20, 100, (n, 21, 2)).astype(np.float32)
    vis = np.ones((n, 21), bool)
    vis[0, 5] = vis[1, 12] = False
    pts[~vis] = -1
    np.savez(root / "labels.npz", names=names, pts21_crop=pts, visible=vis,
             yaw_deg=np.array([5, -40, 70, 10], np.float32)[:n], roi_box=np.zeros((n, 4), np.float32),
             pts21_orig=pts, split=np.array(["train", "val", "train", "train"])[:n])
    lm = rng.uniform(20, 100, (n, 68, 3)).astype(np.float32)
    pp = np.radians(np.array([[1, 5, 2], [0, -40, 0], [3, 70, 1], [0, 10, 0]], np.float32))[:n]
    np.savez(root / "teacher_3ddfa_v2_mb05.npz", names=names, lm68_crop=lm, pose_para_rad=pp)
    return names, pts, vis, lm


def test_protocol_box_maps_the_whole_crop():
    b = protocol_box(120, 120)
    cb = preprocess.crop_boxes(b[None])[0]
    np.testing.assert_allclose(cb, [-0.5, -0.5, 119.5, 119.5], atol=1e-4)


def test_fixture_crops_and_mix(tmp_path):
    names, pts, vis, lm = _fixture(tmp_path)
    lab = read_aflw_labels(tmp_path)
    assert np.isnan(lab.pts21[0, 5]).all() and np.isfinite(lab.pts21[0, 4]).all()
    crops = AflwCrops(tmp_path, split="train")
    assert len(crops) == 3 and crops[0].yaw_gt == pytest.approx(5.0)
    mix = load_aflw19k(tmp_path, split="train", weights=MixWeights(teacher_landmarks=0.25, teacher_pose=0.5))
    s = mix[1]  # train rows are 0, 2, 3
    np.testing.assert_allclose(s.landmarks, lm[2])
    np.testing.assert_allclose(s.ypr, [70, 3, 1], atol=1e-4)  # pitch, yaw, roll -> yaw, pitch, roll
    assert s.landmarks_weight == 0.25 and s.pose_weight == 0.5 and s.dense is None
    np.testing.assert_allclose(s.box, [*lm[2, :, :2].min(0), *lm[2, :, :2].max(0)])
    # dense labels from an fa-label folder, joined by name; low confidence is left out
    dense = np.random.default_rng(1).uniform(0, 120, (2, 468, 3))
    write_labelled(tmp_path / "mp", teacher="t", image_dir=str(tmp_path / "images"), names=[names[0], names[2]],
                   lm68=lm[[0, 2]], ypr=np.zeros((2, 3)), dense=dense, confidence=[0.9, 0.2],
                   boxes=np.zeros((2, 4)))
    mix = load_aflw19k(tmp_path, split="train", dense_labels=tmp_path / "mp")
    np.testing.assert_allclose(mix[0].dense, dense[0], atol=1e-4)
    assert mix[1].dense is None  # row 2: confidence 0.2 < 0.5
    assert mix.coverage()["dense"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no image of split 'val' has dense labels"):
        load_aflw19k(tmp_path, split="val", dense_labels=tmp_path / "mp")


def test_teacher_names_must_match(tmp_path):
    _fixture(tmp_path)
    with np.load(tmp_path / "teacher_3ddfa_v2_mb05.npz") as z:
        d = {k: z[k] for k in z.files}
    d["names"] = d["names"][::-1]
    np.savez(tmp_path / "teacher_3ddfa_v2_mb05.npz", **d)
    with pytest.raises(ValueError, match="teacher_3ddfa_v2_mb05.npz: names do not match"):
        load_aflw19k(tmp_path)


def test_real_aflw19k(aflw19k):
    lab = read_aflw_labels(aflw19k)
    assert (lab.split == "val").sum() == 1908
    mix = load_aflw19k(aflw19k, split="val")
    assert len(mix) == 1908
    s = mix[0]
    assert s.image.shape == (120, 120, 3) and s.landmarks.shape == (68, 3) and s.pts21.shape == (21, 2)
    # yaw sign: AFLW's yaw and the teacher's Pose_Para yaw agree in sign (the package convention)
    yaw_t = np.array([mix[i].ypr[0] for i in range(0, 1908, 20)])
    yaw_gt = np.array([mix[i].yaw_gt for i in range(0, 1908, 20)])
    assert np.corrcoef(yaw_t, yaw_gt)[0, 1] > 0.9
    # the real points and the teacher's agree at a checked correspondence (left eye outer corner 6 -> 36)
    ok = [i for i in range(0, 1908, 20) if np.isfinite(mix[i].pts21[6]).all()]
    d = [np.linalg.norm(mix[i].pts21[6] - mix[i].landmarks[36, :2]) for i in ok]
    assert np.median(d) < 4.0


def test_teacher_file_selects_the_labels(tmp_path):
    _, _, _, lm = _fixture(tmp_path)
    with np.load(tmp_path / "teacher_3ddfa_v2_mb05.npz") as z:
        d = {k: z[k] for k in z.files}
    d["lm68_crop"] = d["lm68_crop"] + 1.5
    np.savez(tmp_path / "teacher_tta.npz", **d)
    plain = load_aflw19k(tmp_path, split="train")
    tta = load_aflw19k(tmp_path, split="train", teacher_file="teacher_tta.npz")
    np.testing.assert_allclose(tta[1].landmarks, plain[1].landmarks + 1.5, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_aflw19k(tmp_path, teacher_file="missing.npz")


def test_real_tta_teacher_matches_the_plain_one(aflw19k):
    plain = load_aflw19k(aflw19k, split="val")
    tta = load_aflw19k(aflw19k, split="val", teacher_file="teacher_3ddfa_v2_mb05_tta.npz")
    d = [np.abs(tta[i].landmarks[:, :2] - plain[i].landmarks[:, :2]).mean() for i in range(0, 1908, 100)]
    assert 0 < np.median(d) < 3.0  # the same teacher, averaged over augmentations: close, not identical
