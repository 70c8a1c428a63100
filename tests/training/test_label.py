"""fa-label: the 468 -> 68 table, the labelling pipeline (with a stand-in teacher) and MediaPipe itself."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from fa3d.runtime import pose
from fa3d.data.datasets.labelled import read_labelled
from fa3d.training.teacher.mapping import TABLE_468_TO_68, derive_table, map_dense_to_68
from fa3d.training.teacher.mediapipe_teacher import TeacherLabel, pose_from_landmarks, teacher_available

HAS_MP = importlib.util.find_spec("mediapipe") is not None


def test_table_is_valid():
    t = np.array(TABLE_468_TO_68)
    assert t.shape == (68, 2) and t.min() >= 0 and t.max() < 468
    dense = np.random.default_rng(0).normal(size=(468, 3))
    lm = map_dense_to_68(dense)
    np.testing.assert_allclose(lm[5], (dense[t[5, 0]] + dense[t[5, 1]]) / 2)
    with pytest.raises(ValueError, match="468"):
        map_dense_to_68(np.zeros((400, 3)))


def test_derive_table_recovers_a_planted_table():
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 100, (40, 468, 2))
    verts = rng.permutation(468)[:136].reshape(68, 2)
    planted = verts.copy()
    planted[:30, 1] = planted[:30, 0]  # single vertices
    # pairs: the second vertex near the first, so both rank among the best single vertices
    dense[:, planted[30:, 1]] = dense[:, planted[30:, 0]] + rng.normal(0, 3, (40, 38, 2))
    target = (dense[:, planted[:, 0]] + dense[:, planted[:, 1]]) / 2 + rng.normal(0, 0.01, (40, 68, 2))
    table, errs = derive_table(dense, target, top_k=5)
    np.testing.assert_array_equal(np.sort(table, 1), np.sort(planted, 1))
    assert errs.max() < 0.05


def test_pose_from_landmarks_recovers_rotation():
    from fa3d.runtime import schema

    ypr = np.array([30.0, -10.0, 5.0])
    pts = pose.image_to_view(50 * schema.mean_shape() @ pose.euler_to_matrix(ypr).T + [100, -100, 0])
    np.testing.assert_allclose(pose_from_landmarks(pts), ypr, atol=1e-6)


class _StubTeacher:
    """Stands in for MediaPipe to test our pipeline: one face at a fixed place unless the image is black."""

    version = "stub-teacher 0"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def label(self, image):
        if image.max() == 0:
            return []
        dense = np.random.default_rng(0).uniform(10, 30, (468, 3))
        lm = map_dense_to_68(dense)
        return [TeacherLabel(dense=dense.astype(np.float32), landmarks=lm.astype(np.float32),
                             ypr=pose_from_landmarks(lm).astype(np.float32), confidence=0.8,
                             box=np.array([10, 10, 30, 30], np.float32))]


def test_label_folder_and_video_with_stub(tmp_path):
    from fa3d.training.teacher.labelling import LabelOptions, label_source

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.full((40, 40, 3), 100, np.uint8))
    cv2.imwrite(str(src / "b.png"), np.zeros((40, 40, 3), np.uint8))
    (src / "notes.txt").write_text("ignored")
    summary = label_source(src, tmp_path / "out", LabelOptions(), progress=False, teacher=_StubTeacher())
    assert (summary.images, summary.faces, summary.failed) == (2, 1, 1)
    lab = read_labelled(tmp_path / "out")
    assert list(lab.names) == ["a.png"] and list(lab.failed) == ["b.png"] and lab.teacher == "stub-teacher 0"
    assert (tmp_path / "out" / "images" / "a.png").is_file()
    nocopy = label_source(src, tmp_path / "out2", LabelOptions(copy_images=False), progress=False,
                          teacher=_StubTeacher())
    assert read_labelled(nocopy.labels_path).image_dir == src.resolve()
    # a video: frames are written as images
    vid = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"MJPG"), 10, (40, 40))
    for i in range(4):
        w.write(np.full((40, 40, 3), 60 + i, np.uint8))
    w.release()
    s = label_source(vid, tmp_path / "out3", LabelOptions(every=2), progress=False, teacher=_StubTeacher())
    assert s.images == 2 and sorted(p.name for p in (tmp_path / "out3" / "images").iterdir()) == \
        ["frame_000000.jpg", "frame_000002.jpg"]


@pytest.mark.skipif(HAS_MP, reason="mediapipe is installed here: the missing-teacher message cannot be shown")
def test_missing_mediapipe_says_make_teacher_env(tmp_path, capsys):
    from fa3d.training.cli_label import main

    assert not teacher_available()
    (tmp_path / "src").mkdir()
    cv2.imwrite(str(tmp_path / "src" / "a.png"), np.full((8, 8, 3), 9, np.uint8))
    assert main([str(tmp_path / "src"), str(tmp_path / "out")]) == 3
    assert "make teacher-env" in capsys.readouterr().err
    assert not (tmp_path / "out" / "labels.npz").exists()


@pytest.mark.skipif(not HAS_MP, reason="mediapipe is not installed (run `make teacher-env` and test there)")
def test_mediapipe_labels_a_real_face(format_samples, tmp_path):
    from fa3d.training.cli_label import main
    from fa3d.data.datasets.aflw2000 import AFLW2000

    src = format_samples / "aflw2000_3d"
    assert main([str(src), str(tmp_path / "out"), "--quiet", "--no-copy", "--max-faces", "3"]) == 0
    lab = read_labelled(tmp_path / "out")
    gt = {s.name: s for s in AFLW2000(src)}
    assert set(lab.names.tolist()) | set(lab.failed.tolist()) == set(gt)  # every image accounted for
    assert lab.dense.shape[1:] == (468, 3) and ((lab.confidence > 0) & (lab.confidence <= 1)).all()
    # the near-frontal sample (yaw 1 deg): MediaPipe's face, mapped to 68 points, matches the GT
    g = gt["image00002.jpg"]
    rows = np.flatnonzero(lab.names == "image00002.jpg")
    assert rows.size >= 1
    size = np.sqrt(np.prod(g.box[2:] - g.box[:2]))
    errs = [np.median(np.linalg.norm(lab.lm68[r, 36:68, :2] - g.landmarks[36:68, :2], axis=1)) for r in rows]
    best = rows[int(np.argmin(errs))]
    assert min(errs) / size < 0.05  # eyes and mouth within 5 % of the face size
    assert abs(lab.ypr[best, 0] - g.ypr[0]) < 10 and abs(lab.ypr[best, 1] - g.ypr[1]) < 10
