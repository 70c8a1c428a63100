"""Calibration sets: builders (images, video, dataset records, in-memory faces), file round trip, validation."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fa3d.calibration import calibset
from fa3d.calibration.calibset import (CalibrationSetError, build_from_crops, build_from_images, build_from_video,
                                       load_calibration_set, save_calibration_set, spread_by_yaw)
from fa3d.runtime.preprocess import PreprocessConfig, denormalize, prepare


def test_round_trip_keeps_everything(tmp_path, synthetic_set, preprocess_config):
    path = save_calibration_set(synthetic_set, tmp_path / "set.npz")
    back = load_calibration_set(path, preprocess_config)
    np.testing.assert_array_equal(back.inputs, synthetic_set.inputs)
    np.testing.assert_array_equal(back.landmarks, synthetic_set.landmarks)
    np.testing.assert_array_equal(back.ypr, synthetic_set.ypr)
    assert back.names == synthetic_set.names and back.source == "synthetic test faces"
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == calibset.FORMAT_VERSION and int(z["count"]) == 64
        assert str(z["preprocess_fingerprint"]) == preprocess_config.fingerprint()
        assert json.loads(str(z["preprocess"]))["input_size"] == 32
        assert str(z["created_by"]).startswith("fa3d")


def test_labels_are_in_crop_pixels(synthetic_set):
    # the synthetic faces' landmark box is the face box, so in the crop it is centred and 1/sqrt(2) wide
    lm = synthetic_set.landmarks
    x0, x1 = lm[..., 0].min(1), lm[..., 0].max(1)
    y0, y1 = lm[..., 1].min(1), lm[..., 1].max(1)
    centre = np.stack([(x0 + x1) / 2, (y0 + y1) / 2], 1)
    np.testing.assert_allclose(centre, 15.5, atol=0.05)
    np.testing.assert_allclose(np.maximum(x1 - x0, y1 - y0), 32 / np.sqrt(2), rtol=1e-3)


def test_fingerprint_mismatch_says_how_to_fix(tmp_path, synthetic_set):
    path = save_calibration_set(synthetic_set, tmp_path / "set.npz")
    other = PreprocessConfig(input_size=32, crop_scale=1.6)
    with pytest.raises(CalibrationSetError, match=r"another preprocessing.*crop_scale.*fa-calib"):
        load_calibration_set(path, other)


def test_bad_files_are_refused(tmp_path, synthetic_set, preprocess_config):
    with pytest.raises(CalibrationSetError, match="not found"):
        load_calibration_set(tmp_path / "nope.npz", preprocess_config)
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(CalibrationSetError, match="not an fa3d calibration set"):
        load_calibration_set(tmp_path / "foreign.npz", preprocess_config)
    path = save_calibration_set(synthetic_set, tmp_path / "set.npz")
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["format_version"] = np.asarray(99)
    np.savez(tmp_path / "future.npz", **d)
    with pytest.raises(CalibrationSetError, match="format 99"):
        load_calibration_set(tmp_path / "future.npz", preprocess_config)
    d["format_version"] = np.asarray(1)
    d["inputs"] = d["inputs"].astype(np.float16)
    np.savez(tmp_path / "half.npz", **d)
    with pytest.raises(CalibrationSetError, match="float32"):
        load_calibration_set(tmp_path / "half.npz", preprocess_config)


def test_write_is_atomic(tmp_path, synthetic_set, monkeypatch):
    target = tmp_path / "set.npz"
    save_calibration_set(synthetic_set.subset(range(4)), target)
    before = target.read_bytes()

    def boom(file, **arrays):  # the set is written through a file object (fa3d.runtime.atomic.atomic_open)
        file.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(KeyboardInterrupt):
        save_calibration_set(synthetic_set, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set.npz"]


def test_spread_by_yaw_balances_bins():
    rng = np.random.default_rng(0)
    yaw = np.concatenate([rng.uniform(-20, 20, 200), rng.uniform(40, 55, 10), rng.uniform(-80, -65, 5)])
    idx = spread_by_yaw(yaw, 45, seed=1)
    assert len(idx) == 45 and len(set(idx.tolist())) == 45
    picked = yaw[idx]
    assert np.sum(picked < -60) == 5 and np.sum((picked > 30) & (picked < 60)) == 10  # rare poses all kept
    np.testing.assert_array_equal(idx, spread_by_yaw(yaw, 45, seed=1))


def test_build_from_images_uses_given_boxes_and_detector(tmp_path, preprocess_config):
    from fa3d.runtime.datasets.synthetic import synth_faces
    faces = synth_faces(3, seed=5, size=80)
    for i, f in enumerate(faces):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), f.image)
    calls = []

    def detector(img):
        calls.append(img.shape)
        return np.array([[10, 10, 40, 40], [0, 0, 70, 70]], np.float64)  # the larger one is kept

    cs = build_from_images(tmp_path, preprocess_config, detector=detector, boxes={"f0.png": faces[0].box[None]})
    assert len(cs) == 3 and len(calls) == 2
    expect = prepare(faces[0].image, faces[0].box[None], preprocess_config).inputs
    np.testing.assert_array_equal(cs.inputs[:1], expect)
    np.testing.assert_allclose(cs.boxes[1], [0, 0, 70, 70])
    with pytest.raises(CalibrationSetError, match="no face"):
        build_from_images(tmp_path, preprocess_config, detector=lambda img: np.zeros((0, 4)))


def test_build_from_video(tmp_path, preprocess_config):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(12):
        w.write(np.full((48, 64, 3), 20 * i, np.uint8))
    w.release()
    cs = build_from_video(path, preprocess_config, detector=lambda img: np.array([[10, 5, 40, 40.0]]), every=4)
    assert cs.names == ("clip.avi@0", "clip.avi@4", "clip.avi@8")
    means = denormalize(cs.inputs, preprocess_config)[:, 16, 16].mean(axis=1)
    assert means[0] < means[1] < means[2]  # the frames really are different frames
    with pytest.raises(CalibrationSetError, match="not found"):
        build_from_video(tmp_path / "none.mp4", preprocess_config, detector=lambda img: np.zeros((0, 4)))


def test_build_from_crops_and_holdout(preprocess_config, synthetic_set):
    img = np.zeros((60, 60, 3), np.uint8)
    cs = build_from_crops([img, img], [[10, 10, 40, 40], [5, 5, 50, 50]], preprocess_config)
    assert len(cs) == 2 and cs.landmarks is None
    cal, val = synthetic_set.split_holdout(every=4)
    assert len(cal) == 48 and len(val) == 16 and not set(cal.names) & set(val.names)
