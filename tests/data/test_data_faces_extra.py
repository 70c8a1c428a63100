"""faces_extra: the loader joins teacher labels and human points by name; helen-test scores the inner 51 points."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.data.datasets.mix import FacesExtraMix
from fa3d.data.evaluation.metrics import yaw_bins
from fa3d.data.evaluation import protocols as ev


def _faces_extra(root, n=6):
    """A faces_extra folder in the real layout: 120 px crops, labels.npz, the TTA teacher file."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    names = np.array([f"helen_te_{i}.jpg" if i < 3 else f"fairface_{i}.jpg" for i in range(n)])
    base = np.stack(np.meshgrid(np.linspace(30, 90, 17), [40.0, 80.0, 60.0, 70.0]), -1).reshape(-1, 2)[:68]
    lm = np.repeat(base[None], n, 0) + rng.normal(0, 1, (n, 68, 2))
    teacher = np.concatenate([lm + 1.0, rng.uniform(0, 10, (n, 68, 1))], axis=2).astype(np.float32)
    human = np.full((n, 68, 2), np.nan, np.float32)
    human[:3] = lm[:3]
    for nm in names:
        cv2.imwrite(str(root / "images" / nm), np.full((120, 120, 3), 128, np.uint8))
    np.savez(root / "labels.npz", names=names, split=np.array(["val"] * 3 + ["train"] * (n - 3)),
             source=np.array(["helen"] * 3 + ["fairface"] * (n - 3)), pts68_crop=human,
             pts5_crop=np.full((n, 5, 2), np.nan, np.float32))
    pose = np.zeros((n, 3), np.float32)
    pose[:, 1] = np.radians([10, 45, 70, 20, -50, 80])[:n]
    np.savez(root / "teacher_3ddfa_v2_mb05_tta.npz", names=names, lm68_crop=teacher, pose_para_rad=pose)
    return names, teacher, human


def test_loader_joins_teacher_labels_by_name_and_splits(tmp_path):
    names, teacher, human = _faces_extra(tmp_path)
    train = FacesExtraMix(tmp_path, "train")
    assert len(train) == 3 and [s.name for s in train] == list(names[3:])
    s = train[0]
    assert s.source == "faces_extra" and s.pts21 is None and s.yaw_gt is None
    assert np.array_equal(s.landmarks, teacher[3]) and s.image.shape == (120, 120, 3)
    assert s.box[0] == pytest.approx(teacher[3, :, 0].min(), abs=1e-4)  # the teacher's tight box
    assert list(train.teacher_yaw_bins()) == [0, 1, 2]  # |yaw| 20, 50, 80
    val = FacesExtraMix(tmp_path, "val")
    assert val.human68(0) is not None and np.allclose(val.human68(0), human[0])


def test_loader_frames_a_crop_by_the_teacher_box_or_as_the_teacher_saw_it(tmp_path):
    from fa3d.data.datasets.aflw import protocol_box

    _, teacher, _ = _faces_extra(tmp_path)
    tight = FacesExtraMix(tmp_path, "train")[0].box
    whole = FacesExtraMix(tmp_path, "train", box="protocol")[0].box
    np.testing.assert_allclose(whole, protocol_box(120, 120))
    assert not np.allclose(tight, whole)
    with pytest.raises(ValueError, match="box must be"):
        FacesExtraMix(tmp_path, "train", box="crop")
    pytest.importorskip("torch")  # fa-train's loader passes the config's box on
    from fa3d.training.config import SourceConfig
    from fa3d.training.dataset import default_registry

    src = SourceConfig(kind="faces_extra", path=str(tmp_path), split="train", box="protocol")
    np.testing.assert_allclose(default_registry()["faces_extra"](src)[0].box, protocol_box(120, 120))


def test_loader_refuses_a_teacher_file_of_other_names(tmp_path):
    _faces_extra(tmp_path)
    z = dict(np.load(tmp_path / "teacher_3ddfa_v2_mb05_tta.npz"))
    z["names"] = z["names"][::-1]
    np.savez(tmp_path / "teacher_3ddfa_v2_mb05_tta.npz", **z)
    with pytest.raises(ValueError, match="names do not match"):
        FacesExtraMix(tmp_path, "train")


def test_yaw_bins_match_the_benchmark_bins():
    ypr = np.array([[0, 0, 0], [30, 0, 0], [-30.01, 0, 0], [60, 0, 0], [-75, 0, 0], [95, 0, 0]], float)
    assert list(yaw_bins(ypr)) == [0, 0, 1, 1, 2, 2]


def test_helen_test_scores_the_inner_51_points_against_the_human_box(tmp_path):
    _, _, human = _faces_extra(tmp_path)
    gt = ev.load_ground_truth("helen-test", tmp_path)
    assert len(gt) == 3
    pred = np.concatenate([gt.lm68, np.zeros((3, 68, 1))], axis=2)
    pred[:, :17] += 50.0  # the jaw (silhouette in 300W) is not scored
    pred[:, 17:, 0] += 2.0
    res = ev.evaluate(gt, ev.Predictions(gt.names, pred, np.zeros((3, 3))))
    span = human[:3].max(1) - human[:3].min(1)
    expect = 200.0 / np.sqrt(span[:, 0] * span[:, 1])
    assert res.nme2d["all"] == pytest.approx(expect.mean(), rel=1e-6)
