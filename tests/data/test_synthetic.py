"""Synthetic faces: determinism, geometry consistent with the pose convention, features at the landmarks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime import pose, schema
from fa3d.runtime.preprocess import landmark_box
from fa3d.data.datasets.synthetic import SyntheticFace, synth_face, synth_faces, synthetic_video


def _disc_mean(img: np.ndarray, centre: np.ndarray, r: float) -> np.ndarray:
    m = np.zeros(img.shape[:2], np.uint8)
    cv2.circle(m, (int(round(centre[0])), int(round(centre[1]))), max(1, int(round(r))), 1, -1)
    return img[m > 0].astype(np.float64).mean(0)


def test_types_and_shapes():
    f = synth_face(3, (200, 120))
    assert isinstance(f, SyntheticFace)
    assert f.image.shape == (120, 200, 3) and f.image.dtype == np.uint8
    assert f.landmarks.shape == (68, 3) and f.landmarks.dtype == np.float32
    assert f.ypr.shape == (3,) and f.ypr.dtype == np.float32
    assert f.rotation.shape == (3, 3) and f.rotation.dtype == np.float32
    np.testing.assert_allclose(f.rotation, pose.euler_to_matrix(f.ypr), atol=1e-5)
    np.testing.assert_allclose(f.box, landmark_box(f.landmarks)[0], atol=1e-4)


def test_deterministic_for_a_seed():
    a, b, c = synth_face(11, 96), synth_face(11, 96), synth_face(12, 96)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks, b.landmarks)
    np.testing.assert_array_equal(a.ypr, b.ypr)
    assert not np.array_equal(a.image, c.image)
    assert not np.allclose(a.landmarks, c.landmarks)
    batch = synth_faces(3, 5, size=64)
    assert len(batch) == 3
    assert not np.array_equal(batch[0].image, batch[1].image)
    np.testing.assert_array_equal(batch[2].landmarks, synth_faces(3, 5, size=64)[2].landmarks)


def test_landmarks_inside_image_and_pose_consistent():
    errors, yaws = [], []
    for seed in range(120):
        f = synth_face(seed, (128, 96))
        xy = f.landmarks[:, :2]
        assert (xy >= 0).all() and (xy[:, 0] <= 127).all() and (xy[:, 1] <= 95).all(), seed
        # the rotation fitted from the landmarks to the mean shape recovers the sample's pose;
        # identity and expression variation leave a small residual (measured: median 0.3, max 1.2 deg)
        rot, scale, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(f.landmarks))
        errors.append(float(pose.geodesic_deg(rot, f.rotation)))
        yaws.append(float(f.ypr[0]))
        assert scale > 0
    assert np.median(errors) < 1.0
    assert max(errors) < 3.0
    # yaw covers the full +-90 range
    assert min(yaws) < -80 and max(yaws) > 80
    assert np.mean(np.abs(yaws) > 60) > 0.2


def test_ranges_are_respected_and_validated():
    for seed in range(20):
        f = synth_face(seed, 64, yaw_range=(10, 20), pitch_range=(-5, 0), roll_range=(0, 1))
        assert 10 <= f.ypr[0] <= 20 and -5 <= f.ypr[1] <= 0 and 0 <= f.ypr[2] <= 1
    with pytest.raises(ValueError, match="yaw_range"):
        synth_face(0, 64, yaw_range=(-120, 0))
    with pytest.raises(ValueError, match="size"):
        synth_face(0, 8)


def test_face_scale_controls_size():
    small = [synth_face(s, 200, yaw_range=(0, 0), face_scale=(0.2, 0.2)) for s in range(5)]
    large = [synth_face(s, 200, yaw_range=(0, 0), face_scale=(0.6, 0.6)) for s in range(5)]
    w_small = np.mean([f.box[2] - f.box[0] for f in small])
    w_large = np.mean([f.box[2] - f.box[0] for f in large])
    assert 2.5 < w_large / w_small < 3.5
    assert 0.12 * 200 < w_small < 0.28 * 200


def test_features_are_drawn_at_the_landmarks():
    """Open eyes drawn at their landmarks differ in colour from the cheek beside them; moving the
    probe away from the eye (to the cheek) would make this fail."""
    checked = 0
    for seed in range(40):
        f = synth_face(seed, 256, yaw_range=(-30, 30), pitch_range=(-20, 20), occluders=False)
        lm = f.landmarks[:, :2]
        cheek_c = (lm[1] + lm[2] + lm[31] + lm[48]) / 4
        cheek = _disc_mean(f.image, cheek_c, 3)
        for eye in (schema.GROUPS["left_eye"], schema.GROUPS["right_eye"]):
            e = lm[list(eye)]
            width = np.linalg.norm(e[3] - e[0])
            height = (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / 2
            if height < 0.2 * width:  # closed eye
                continue
            inside = _disc_mean(f.image, e.mean(0), 0.12 * width)
            assert np.linalg.norm(inside - cheek) > 40, (seed, inside, cheek)
            checked += 1
        # the lips are coloured differently from the background far away: the mouth lies on the face
        assert not np.allclose(_disc_mean(f.image, lm[[51, 57]].mean(0), 1), f.image[0, 0], atol=3)
    assert checked > 40


def test_video_round_trip(tmp_path):
    path = tmp_path / "clip.mp4"
    truth = synthetic_video(path, n_frames=12, size=(160, 120), seed=2, fps=15, faces=1)
    assert path.exists() and not list(tmp_path.glob(".*partial*"))
    assert len(truth) == 12
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 12
    assert frames[0].shape == (120, 160, 3)
    lms = np.stack([t[0] for t in truth])
    yprs = np.stack([t[1] for t in truth])
    assert lms.shape == (12, 1, 68, 3) and yprs.shape == (12, 1, 3)
    # the face moves, smoothly
    step = np.abs(np.diff(lms[:, 0, :, :2], axis=0)).max()
    assert 0 < step < 0.3 * 160
    assert np.ptp(yprs[:, 0, 0]) > 10
    for lm, ypr in truth:
        rot, _, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(lm[0]))
        assert pose.geodesic_deg(rot, pose.euler_to_matrix(ypr[0])) < 3.0
    two = synthetic_video(tmp_path / "two.mp4", n_frames=3, size=(160, 120), seed=1, faces=2)
    assert two[0][0].shape == (2, 68, 3)
