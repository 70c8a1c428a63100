"""The 68-point schema: names, groups, the mirror permutation, AFLW-21 map and the mean shape."""

import numpy as np
import pytest

from fa3d.runtime import schema


def test_names_and_groups_partition_the_68_points():
    assert len(schema.NAMES) == 68 and len(set(schema.NAMES)) == 68
    covered = sorted(i for g in schema.GROUPS.values() for i in g)
    assert covered == list(range(68))
    assert {g for gs in schema.COARSE_GROUPS.values() for g in gs} == set(schema.GROUPS)
    assert schema.NAMES[36] == "left_eye_outer_corner" and schema.NAMES[45] == "right_eye_outer_corner"
    assert schema.NAMES[48] == "mouth_left_corner" and schema.NAMES[54] == "mouth_right_corner"


def test_mirror_is_an_involution_that_swaps_left_and_right():
    m = schema.MIRROR
    np.testing.assert_array_equal(m[m], np.arange(68))
    assert m[36] == 45 and m[39] == 42 and m[48] == 54 and m[0] == 16 and m[30] == 30
    for i in schema.GROUPS["left_eye"]:
        assert m[i] in schema.GROUPS["right_eye"]
    for i in schema.GROUPS["left_brow"]:
        assert m[i] in schema.GROUPS["right_brow"]


def test_mean_shape_is_symmetric_under_the_mirror():
    s = schema.mean_shape()
    mirrored = s[schema.MIRROR] * [-1, 1, 1]
    np.testing.assert_allclose(mirrored, s, atol=1e-4)
    # frontal, model frame: image-left points have negative x, the nose is nearest, the chin lowest
    assert s[36, 0] < 0 < s[45, 0]
    assert s[30, 2] == s[:, 2].max()
    assert s[8, 1] == s[:, 1].min()


def test_mirror_landmarks_flips_x_and_reorders():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 100, (2, 68, 3))
    out = schema.mirror_landmarks(pts, image_width=100)
    np.testing.assert_allclose(out[:, 36, 0], 99 - pts[:, 45, 0])
    np.testing.assert_allclose(out[:, 36, 2], pts[:, 45, 2])
    np.testing.assert_allclose(schema.mirror_landmarks(out, 100), pts)
    with pytest.raises(ValueError, match="68"):
        schema.mirror_landmarks(np.zeros((21, 2)), 100)


def test_aflw21_map_points_to_matching_parts():
    assert len(schema.AFLW21_NAMES) == 21
    for a, i in schema.AFLW21_TO_IBUG68.items():
        name, ibug = schema.AFLW21_NAMES[a], schema.NAMES[i]
        side = name.split("_")[0]
        if side in ("left", "right"):
            assert ibug.startswith(side) or ibug.endswith(f"{side}_corner"), (name, ibug)
    assert schema.AFLW21_TO_IBUG68[14] == 30  # nose tip
