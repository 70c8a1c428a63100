"""Loss terms on hand-checkable cases; masks skip missing labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fa3d.runtime import pose
from fa3d.runtime.schema import mean_shape
from fa3d.training.losses import (LossWeights, compute_losses, fitted_rotation, geodesic, heatmap_targets,
                                  masked_mean, rotate_in_plane, teacher_forcing_probability, yaw_of)


def _rot(ypr):
    return torch.from_numpy(pose.euler_to_matrix(np.asarray(ypr, dtype=np.float64))).float()


def test_geodesic_of_known_rotations():
    a = _rot([[0, 0, 0], [0, 0, 0], [10, 20, 30]])
    b = _rot([[0, 0, 30], [90, 0, 0], [10, 20, 30]])
    ang = torch.rad2deg(geodesic(a, b))
    assert torch.allclose(ang[:2], torch.tensor([30.0, 90.0]), atol=1e-2)
    assert ang[2] < 0.2  # identical rotations (clamped acos: near 0)


def test_yaw_and_in_plane_rotation_match_runtime():
    ypr = np.array([[35.0, -12.0, 8.0], [-70.0, 5.0, -20.0]])
    r = torch.from_numpy(pose.euler_to_matrix(ypr))
    assert torch.allclose(yaw_of(r), torch.tensor(ypr[:, 0]), atol=1e-6)
    rr = rotate_in_plane(r, torch.tensor([25.0, -40.0], dtype=torch.float64)).numpy()
    ref = pose.in_plane_rotation(pose.euler_to_matrix(ypr), np.array([25.0, -40.0]))
    assert np.allclose(rr, ref, atol=1e-9)


def test_heatmap_target_peaks_at_the_landmark():
    lm = torch.full((1, 68, 3), -1000.0)  # all but one landmark far outside the volume
    lm[0, 0] = torch.tensor([42.0, 18.0, 0.0])  # crop pixels in a 64 crop; heatmap 16x16, stride 4
    vol = heatmap_targets(lm, input_size=64, size=16, bins=8, z_range=1.0, sigma=1.0)
    d, h, w = np.unravel_index(int(vol[0].argmax()), vol[0].shape)
    assert (h, w) == (round((18 + 0.5) / 4 - 0.5), round((42 + 0.5) / 4 - 0.5))
    assert d in (3, 4)  # z = 0 is the middle of 8 bins
    assert float(vol.max()) <= 1.0


def test_masked_mean_skips_unlabelled_samples():
    v = torch.tensor([1.0, 100.0, 3.0], requires_grad=True)
    m = masked_mean(v, torch.tensor([1.0, 0.0, 1.0]))
    assert float(m.detach()) == pytest.approx(2.0)
    m.backward()
    assert v.grad[1] == 0
    assert float(masked_mean(v, torch.zeros(3)).detach()) == 0.0


def _batch(n=2, s=64, dense=4):
    lm = torch.rand(n, 68, 3) * s
    lm[..., 2] -= lm[..., 2].mean(1, keepdim=True)
    return {"landmarks": lm, "has_landmarks": torch.ones(n), "landmarks_weight": torch.ones(n),
            "rotation": torch.eye(3).repeat(n, 1, 1), "has_pose": torch.ones(n), "pose_weight": torch.ones(n),
            "pts21": torch.zeros(n, 21, 2), "pts21_visible": torch.zeros(n, 21), "yaw_gt": torch.zeros(n),
            "has_yaw": torch.zeros(n), "angle": torch.zeros(n), "dense": torch.zeros(n, dense, 3),
            "has_dense": torch.zeros(n), "dense_weight": torch.ones(n), "is_face": torch.ones(n)}


def _out(batch, n=2, dense=4):
    return {"landmarks": batch["landmarks"] + 1.0, "rotation": _rot([[0, 0, 20]] * n),
            "dense": torch.ones(n, dense, 3), "confidence": torch.full((n, 1), 0.5)}


def test_missing_labels_are_skipped_not_zero_filled():
    b = _batch()
    out = _out(b)
    full = compute_losses(out, b, 64, 8, 1.0, LossWeights())
    # garbage labels of sample 1, masked out, change nothing
    b2 = {k: v.clone() for k, v in b.items()}
    b2["landmarks"][1] = 1e6
    b2["rotation"][1] = _rot([90, 0, 0])
    b2["has_landmarks"][1] = 0
    b2["has_pose"][1] = 0
    masked = compute_losses(out, b2, 64, 8, 1.0, LossWeights())
    # sample 0's terms alone
    one = compute_losses({k: v[:1] for k, v in out.items()}, {k: v[:1] for k, v in b.items()}, 64, 8, 1.0,
                         LossWeights())
    for k in ("coords", "pose"):
        assert float(masked[k]) == pytest.approx(float(one[k]), rel=1e-5)
    assert float(full["pose"]) == pytest.approx(math.radians(20), rel=1e-3)
    # no dense label anywhere: the dense term is exactly 0, not a distance to zeros
    assert float(full["dense"]) == 0.0


def test_aflw21_and_yaw_terms_use_visible_points_and_image_frame():
    b = _batch(n=1)
    out = _out(b, n=1)
    b["pts21"][0, 14] = b["landmarks"][0, 30, :2] + 1.0  # nose tip = iBUG 30, predicted exactly
    b["pts21_visible"][0, 14] = 1
    w = LossWeights()
    assert float(compute_losses(out, b, 64, 8, 1.0, w)["aflw21"]) == pytest.approx(0.0, abs=1e-6)
    b["pts21"][0, 6] = 0.0  # an invisible point's value never counts
    assert float(compute_losses(out, b, 64, 8, 1.0, w)["aflw21"]) == pytest.approx(0.0, abs=1e-6)
    # yaw: the prediction is rotated back by the crop angle before comparing with the image yaw
    out["rotation"] = rotate_in_plane(_rot([[30, 10, 0]]), torch.tensor([25.0]))
    b.update(yaw_gt=torch.tensor([30.0]), has_yaw=torch.ones(1), angle=torch.tensor([25.0]))
    assert float(compute_losses(out, b, 64, 8, 1.0, w)["yaw"]) == pytest.approx(0.0, abs=1e-4)


def test_teacher_forcing_schedule():
    p = [teacher_forcing_probability(t, 100, 0.8, 0.5) for t in range(101)]
    assert p[0] == pytest.approx(0.8) and p[50] == pytest.approx(0.0, abs=1e-12) and p[100] == 0.0
    assert all(a >= b for a, b in zip(p, p[1:]))
    assert p[25] == pytest.approx(0.4)


def _face_landmarks(ypr, in_plane=0.0):
    """Crop landmarks (1, 68, 3) of the mean shape turned by ``ypr``, then by ``in_plane`` degrees in the crop."""
    r = pose.in_plane_rotation(pose.euler_to_matrix(np.asarray(ypr, np.float64)), in_plane)
    return torch.from_numpy(pose.image_to_view(mean_shape() @ r.T * 40 + 56)[None]).float()


def test_fitted_rotation_is_the_runtime_fit_and_has_a_gradient():
    lm = _face_landmarks([35.0, -10.0, 5.0]) + torch.randn(1, 68, 3)
    r = fitted_rotation(lm, torch.from_numpy(mean_shape().copy()))
    np.testing.assert_allclose(r.numpy(), pose.rotation_from_landmarks(lm.numpy()), atol=1e-5)
    lm.requires_grad_(True)
    geodesic(fitted_rotation(lm, torch.from_numpy(mean_shape().copy())), _rot([[0, 0, 0]])).sum().backward()
    assert torch.isfinite(lm.grad).all() and float(lm.grad.abs().max()) > 0


def test_fit_losses_score_the_reported_pose_on_labelled_faces_only():
    b = _batch(n=2)
    b["landmarks"] = torch.cat([_face_landmarks([30.0, 0, 0], in_plane=25.0), torch.zeros(1, 68, 3)])
    b["rotation"] = _rot([[30.0, 0, 0]] * 2)
    b.update(yaw_gt=torch.tensor([30.0, 0.0]), has_yaw=torch.tensor([1.0, 0.0]), angle=torch.tensor([25.0, 0.0]))
    b["rotation"][0] = torch.from_numpy(pose.in_plane_rotation(pose.euler_to_matrix(np.array([30.0, 0, 0])), 25.0))
    b["has_pose"][1] = 0  # a degenerate, unlabelled second face: never fitted (its SVD gradient would be NaN)
    out = {**_out(b), "landmarks": b["landmarks"].clone().requires_grad_(True)}
    assert "fit_yaw" not in compute_losses(out, b, 64, 8, 1.0, LossWeights())  # weights 0: not computed
    w = LossWeights(fit_pose=1.0, fit_yaw=1.0)
    got = compute_losses(out, b, 64, 8, 1.0, w)
    assert float(got["fit_pose"].detach()) == pytest.approx(0.0, abs=2e-3)  # acos(1 - eps) = 1.4e-3 at best
    assert float(got["fit_yaw"].detach()) == pytest.approx(0.0, abs=1e-4)
    got["total"].backward()
    assert torch.isfinite(out["landmarks"].grad).all()
    b["yaw_gt"][0] = 39.0  # the human yaw 9 degrees further: 9 / 90 of the normalised yaw term
    assert float(compute_losses(out, b, 64, 8, 1.0, w)["fit_yaw"].detach()) == pytest.approx(0.1, abs=1e-3)
