"""The single preprocessing implementation: crop rule, warp, normalisation and the exact inverse."""

import cv2
import numpy as np
import pytest

from fa3d.runtime import pose, preprocess as pp, schema

CFG = pp.PreprocessConfig(input_size=128)


def test_crop_box_rule_is_a_centred_square():
    cb = pp.crop_boxes([[10, 20, 50, 100]], crop_scale=np.sqrt(2))
    w, h = cb[0, 2] - cb[0, 0], cb[0, 3] - cb[0, 1]
    assert w == pytest.approx(h) == pytest.approx(np.sqrt(2) * 80)
    np.testing.assert_allclose((cb[0, :2] + cb[0, 2:]) / 2, [30, 60])


def test_landmark_box_is_tight_and_ignores_nan():
    pts = np.array([[[1, 2, 0], [5, 9, 3], [np.nan, np.nan, np.nan]]])
    np.testing.assert_allclose(pp.landmark_box(pts), [[1, 2, 5, 9]])


@pytest.mark.parametrize("angle", [0.0, 17.0, -60.0])
def test_forward_then_inverse_is_identity(angle):
    rng = np.random.default_rng(1)
    boxes = np.stack([rng.uniform(0, 300, 5), rng.uniform(0, 300, 5)], 1)
    boxes = np.concatenate([boxes, boxes + rng.uniform(20, 200, (5, 1))], 1)
    m = pp.crop_transforms(pp.crop_boxes(boxes), 128, angle_deg=angle)
    pts = rng.uniform(-50, 600, (5, 68, 3))
    back = pp.to_image(pp.to_crop(pts, m), m)
    assert np.abs(back - pts).max() < 0.01
    np.testing.assert_allclose(pp.invert_transforms(pp.invert_transforms(m)), m, atol=1e-9)


def test_z_is_scaled_like_x_and_y():
    m = pp.crop_transforms([[0, 0, 256, 256]], 128)  # side 256 -> 128: scale 0.5
    out = pp.to_crop(np.array([[[10.0, 10.0, 40.0]]]), m)
    assert out[0, 0, 2] == pytest.approx(20.0)
    assert pp.transform_scale(m)[0] == pytest.approx(0.5)


def test_crop_box_extent_maps_onto_the_input_extent():
    m = pp.crop_transforms([[10, 20, 74, 84]], 64)  # side 64 at scale 1: pure shift
    np.testing.assert_allclose(pp.to_crop(np.array([[[10.0, 20.0], [74.0, 84.0]]]), m), [[[-0.5, -0.5], [63.5, 63.5]]])


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_warped_pixels_sit_where_the_transform_says(angle):
    """A bright dot in the image appears in the crop at to_crop(dot)."""
    img = np.zeros((400, 500, 3), np.uint8)
    dot = np.array([231.0, 177.0])
    cv2.circle(img, (int(dot[0]), int(dot[1])), 3, (255, 255, 255), -1)
    cfg = pp.PreprocessConfig(input_size=128)
    prep = pp.prepare(img, np.array([[180, 130, 300, 250]]), cfg, angle_deg=angle)
    crop = pp.denormalize(prep.inputs, cfg)[0, :, :, 0].astype(np.float64)
    ys, xs = np.nonzero(crop > 128)
    found = np.array([np.average(xs, weights=crop[ys, xs]), np.average(ys, weights=crop[ys, xs])])
    expected = pp.to_crop(dot[None, None], prep.transforms)[0, 0]
    assert np.linalg.norm(found - expected) < 0.35


def test_normalisation_round_trip_and_channel_order():
    crops = np.zeros((2, 16, 16, 3), np.uint8)
    crops[..., 0] = 255  # blue in BGR
    x = pp.normalize(crops, pp.PreprocessConfig(input_size=16))
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    assert x[:, 2].min() > 0.9 and x[:, 0].max() < -0.9  # RGB input: blue is the last channel
    np.testing.assert_array_equal(pp.denormalize(x, pp.PreprocessConfig(input_size=16)), crops)
    bgr = pp.normalize(crops, pp.PreprocessConfig(input_size=16, channel_order="BGR"))
    assert bgr[:, 0].min() > 0.9


def test_prepare_is_batched():
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    prep = pp.prepare(img, np.array([[10, 10, 60, 70], [100, 50, 200, 180], [250, 150, 330, 260]]), CFG)
    assert prep.inputs.shape == (3, 3, 128, 128) and prep.transforms.shape == (3, 2, 3)
    gray = pp.prepare(img[..., 0], np.array([[10, 10, 60, 70]]), CFG)
    assert gray.inputs.shape == (1, 3, 128, 128)


def test_rotated_crop_rotation_matches_the_landmarks_in_the_crop():
    """rotation_to_crop agrees with the rotation fitted to the landmarks mapped into a rotated crop."""
    r_img = pose.euler_to_matrix([30.0, -10.0, 5.0])
    pts = pose.image_to_view(schema.mean_shape() @ r_img.T * 60 + [200, -150, 0])[None]
    m = pp.crop_transforms(pp.crop_boxes(pp.landmark_box(pts)), 128, angle_deg=25.0)
    r_fit, _, _ = pose.fit_similarity(schema.mean_shape(), pose.image_to_view(pp.to_crop(pts, m)[0]))
    assert pose.geodesic_deg(r_fit, pp.rotation_to_crop(r_img[None], m)[0]) < 1e-6
    np.testing.assert_allclose(pp.rotation_to_image(pp.rotation_to_crop(r_img[None], m), m)[0], r_img, atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="x2 > x1"):
        pp.crop_boxes([[10, 10, 5, 20]])
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        pp.crop_boxes([[1, 2, 3]])
    with pytest.raises(ValueError, match="uint8"):
        pp.warp_crops(np.zeros((10, 10, 3), np.float32), np.zeros((1, 2, 3)), CFG)
    with pytest.raises(ValueError, match="channel_order"):
        pp.PreprocessConfig(input_size=64, channel_order="YUV")


def test_config_round_trip_and_fingerprint():
    d = CFG.to_dict()
    assert pp.PreprocessConfig.from_dict(d) == CFG
    assert CFG.fingerprint() == pp.PreprocessConfig(input_size=128).fingerprint()
    assert CFG.fingerprint() != pp.PreprocessConfig(input_size=128, crop_scale=1.5).fingerprint()
    with pytest.raises(ValueError, match="version"):
        pp.PreprocessConfig.from_dict({**d, "version": 99})
