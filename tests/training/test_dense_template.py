"""The dense template recipe: teacher dense points brought back into the model frame."""

import numpy as np
import pytest

from fa3d.runtime import pose, schema
from fa3d.training.dense_template import main, template_from_labels


def _faces(template, n=12, seed=0):
    rng = np.random.default_rng(seed)
    lms, dense, yprs = [], [], []
    for _ in range(n):
        ypr = rng.uniform([-25, -20, -20], [25, 20, 20])
        r, s, t = pose.euler_to_matrix(ypr), rng.uniform(20, 60), np.r_[rng.uniform(50, 150, 2), 0.0]
        place = lambda p: pose.image_to_view(s * p @ r.T + t)  # noqa: E731
        lms.append(place(schema.mean_shape()))
        dense.append(place(template))
        yprs.append(ypr)
    return np.array(lms), np.array(dense), np.array(yprs)


def test_template_is_recovered_from_posed_faces(tmp_path):
    tmpl = np.random.default_rng(3).normal(size=(30, 3)).astype(np.float32)
    lm, dense, ypr = _faces(tmpl)
    np.testing.assert_allclose(template_from_labels(lm, dense, ypr=ypr), tmpl, atol=1e-4)
    np.savez(tmp_path / "labels.npz", names=np.array([f"{i}.jpg" for i in range(len(lm))]), lm68=lm, dense=dense,
             ypr=ypr, confidence=np.ones(len(lm)))
    assert main([str(tmp_path / "labels.npz"), str(tmp_path / "t.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "t.npy"), tmpl, atol=1e-4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same faces"):
        template_from_labels(np.zeros((2, 68, 3)), np.zeros((3, 10, 3)))
    lm, dense, ypr = _faces(np.zeros((5, 3)), n=2)
    with pytest.raises(ValueError, match="no face"):
        template_from_labels(lm, dense, max_abs_yaw=0.0, ypr=ypr + 50)
