"""Augmentation goes through the runtime's preprocessing and keeps labels consistent with pixels."""

from __future__ import annotations

import numpy as np
import pytest

from fa3d.runtime import pose, preprocess
from fa3d.training.augment import AFLW21_MIRROR, AugmentConfig, make_example
from fa3d.data.datasets.samples import FaceSample


def _sample(dense=None):
    synth = pytest.importorskip("fa3d.data.datasets.synthetic")
    f = synth.synth_face(3, 128, occluders=False)
    pts21 = np.full((21, 2), np.nan, np.float32)
    pts21[14] = f.landmarks[30, :2]
    return FaceSample(image=f.image, box=f.box, landmarks=f.landmarks, ypr=f.ypr, pts21=pts21, yaw_gt=float(f.ypr[0]),
                      dense=dense)


def test_plain_example_matches_runtime_preprocessing():
    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    ex = make_example(s, pre, AugmentConfig.off(), np.random.default_rng(0), num_dense=0)
    prep = preprocess.prepare(s.image, s.box[None], pre)
    assert np.array_equal(ex["image"], prep.inputs[0])
    lc = preprocess.to_crop(s.landmarks[None].astype(np.float64), prep.transforms)[0]
    assert np.allclose(ex["landmarks"][:, :2], lc[:, :2], atol=1e-4)
    assert np.allclose(ex["landmarks"][:, 2], lc[:, 2] - lc[:, 2].mean(), atol=1e-4)
    assert np.allclose(ex["rotation"], pose.euler_to_matrix(s.ypr), atol=1e-5)
    assert ex["is_face"] == 1 and ex["has_landmarks"] == 1 and ex["has_dense"] == 0
    assert ex["pts21_visible"].sum() == 1 and np.allclose(ex["pts21"][14], lc[30, :2], atol=1e-4)


def test_flip_mirrors_pixels_landmarks_and_pose():
    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    plain = make_example(s, pre, AugmentConfig.off(), np.random.default_rng(0), num_dense=0)
    flip_cfg = AugmentConfig(0, 0, 0, 1.0, 0, 0, 0, 0, 0)
    flipped = make_example(s, pre, flip_cfg, np.random.default_rng(0), num_dense=0)
    # the crop of the flipped image is the mirrored crop (same box rule)
    assert np.abs(flipped["image"] - plain["image"][:, :, ::-1]).max() < 0.05
    from fa3d.runtime.schema import MIRROR
    expect = plain["landmarks"][MIRROR].copy()
    expect[:, 0] = 63 - expect[:, 0]
    assert np.allclose(flipped["landmarks"], expect, atol=1e-3)
    assert np.allclose(flipped["rotation"], pose.mirror_rotation(plain["rotation"]), atol=1e-5)
    assert flipped["yaw_gt"] == pytest.approx(-plain["yaw_gt"])
    assert np.array_equal(AFLW21_MIRROR[AFLW21_MIRROR], np.arange(21))
    assert np.allclose(flipped["pts21"][14], expect[30, :2], atol=1e-3)  # nose tip maps to itself


def test_rotation_augment_keeps_labels_on_the_pixels():
    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    cfg = AugmentConfig(0.1, 0.05, 30.0, 0, 0, 0, 0, 0, 0)
    ex = make_example(s, pre, cfg, np.random.default_rng(5), num_dense=0)
    assert ex["angle"] != 0
    # the rotation target is the image rotation seen through the rotated crop
    m = preprocess.crop_transforms(preprocess.crop_boxes(s.box[None]), 64, ex["angle"])
    want = preprocess.rotation_to_crop(pose.euler_to_matrix(s.ypr)[None], m)[0]
    assert np.allclose(ex["rotation"], want, atol=1e-5)


def test_negative_examples_drop_every_label():
    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    cfg = AugmentConfig(negative_prob=1.0)
    ex = make_example(s, pre, cfg, np.random.default_rng(0), num_dense=0)
    assert ex["is_face"] == 0
    assert ex["has_landmarks"] == ex["has_pose"] == ex["has_yaw"] == ex["has_dense"] == 0
    assert ex["pts21_visible"].sum() == 0


def test_dense_labels_are_mapped_and_checked():
    base = _sample()
    dense = base.landmarks[:10].copy()
    s = FaceSample(image=base.image, box=base.box, landmarks=base.landmarks, ypr=base.ypr, dense=dense)
    pre = preprocess.PreprocessConfig(input_size=64)
    ex = make_example(s, pre, AugmentConfig.off(), np.random.default_rng(0), num_dense=10)
    assert ex["has_dense"] == 1 and np.allclose(ex["dense"], ex["landmarks"][:10], atol=1e-4)
    with pytest.raises(ValueError, match="num_dense"):
        make_example(s, pre, AugmentConfig.off(), np.random.default_rng(0), num_dense=468)


def test_resolution_and_jpeg_degrade_pixels_not_labels():
    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    plain = make_example(s, pre, AugmentConfig.off(), np.random.default_rng(0), num_dense=0)
    cfg = AugmentConfig(0, 0, 0, 0, 0, 0, 0, 0, 0, lowres_prob=1.0, lowres_min=0.3, jpeg_prob=1.0,
                        jpeg_quality_min=20)
    deg = make_example(s, pre, cfg, np.random.default_rng(0), num_dense=0)
    assert np.array_equal(deg["landmarks"], plain["landmarks"]) and np.array_equal(deg["rotation"], plain["rotation"])
    diff = np.abs(deg["image"] - plain["image"]).mean()
    assert 0.005 < diff < 0.3  # visibly degraded, still the same picture
    # high frequencies are what a low resolution removes
    def hf(x):
        return np.abs(np.diff(x, axis=-1)).mean()
    assert hf(deg["image"]) < hf(plain["image"])


@pytest.mark.parametrize("bad", [{"lowres_prob": 1.5}, {"jpeg_quality_min": 0}, {"lowres_min": 0.0},
                                 {"scale_jitter": -0.1}])
def test_augment_config_is_validated(bad):
    with pytest.raises(ValueError, match="augment"):
        AugmentConfig(**bad)


def test_negatives_hold_no_face_and_carry_no_landmark_targets():
    """Every negative kind is labelled 'no face', and its window passes the face-free rule (at most 30 % of the
    face inside, the face at most 40 % of the window, the implied face box at IoU < 0.3)."""
    from fa3d.training.augment import face_free, negative_window

    s = _sample()
    pre = preprocess.PreprocessConfig(input_size=64)
    for share in ({"negative_context": 1.0}, {"negative_masked": 1.0}, {}):
        cfg = AugmentConfig(negative_prob=1.0, **share)
        for seed in range(5):
            ex = make_example(s, pre, cfg, np.random.default_rng(seed), num_dense=0)
            assert ex["is_face"] == 0 and ex["has_landmarks"] == 0 and ex["has_pose"] == 0
    face = np.asarray(s.box, np.float64)
    for beside in (True, False):
        for seed in range(20):
            placed = negative_window(face, s.image.shape, pre.crop_scale, np.random.default_rng(seed), beside)
            if placed is not None:
                c, side = placed
                assert face_free(np.concatenate([c - side / 2, c + side / 2]), face, pre.crop_scale)
    side = (face[2] - face[0]) * pre.crop_scale  # the face's own crop is not face-free, nor is its half
    c = (face[:2] + face[2:]) / 2
    assert not face_free(np.concatenate([c - side / 2, c + side / 2]), face, pre.crop_scale)
    assert not face_free(np.concatenate([c - side / 4, c + side / 4]), face, pre.crop_scale)


def test_masked_negative_paints_over_the_face_only():
    from fa3d.training.augment import paint_over_face

    s = _sample()
    out = paint_over_face(s.image, s.landmarks.astype(np.float64), np.random.default_rng(1))
    changed = (out != s.image).any(axis=2)
    x1, y1, x2, y2 = s.box
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 0.3 * (x2 - x1) * (y2 - y1)  # most of the face is gone
    c, half = (np.array([x1 + x2, y1 + y2]) / 2), 1.25 * np.array([x2 - x1, y2 - y1]) / 2 + 2
    assert (np.abs(xs - c[0]) <= half[0]).all() and (np.abs(ys - c[1]) <= half[1]).all()  # nothing beyond it
