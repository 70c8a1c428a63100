"""tools.teacher_online: the teacher's pipeline reproduces its labels, warps map back, bad files are refused."""

from __future__ import annotations

import numpy as np
import pytest

from fa3d.data.evaluation import protocols as ev
from fa3d.data.evaluation.metrics import nme, yaw_bin_means
from tools import teacher_online as to


def test_map_back_undoes_each_warp():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 120, (68, 2))
    for scale, shift, rot in to.SETTINGS.values():
        m = to.jitter_matrix(rng, scale, shift, rot)
        np.testing.assert_allclose(to.map_back(pts @ m[:, :2].T + m[:, 2], m), pts, atol=1e-9)
    np.testing.assert_allclose(to.jitter_matrix(rng, 0.0, 0.0, 0.0), np.eye(2, 3), atol=1e-12)


def test_missing_or_wrong_teacher_files_are_refused(tmp_path):
    with pytest.raises(to.TeacherError, match="not found"):
        to.Teacher.load(tmp_path)
    (tmp_path / "mb05_120x120.onnx").write_bytes(b"")
    basis = {k: np.zeros(s) for k, s in to.BASIS.items()} | {"w_shp_base": np.zeros((204, 39))}
    np.savez(tmp_path / "basis68.npz", **basis)
    with pytest.raises(to.TeacherError, match="w_shp_base must be a float array of shape \\(204, 40\\)"):
        to.Teacher.load(tmp_path)


@pytest.fixture(scope="module")
def teacher(shared_data):
    folder = shared_data.parent / "teacher" / "3ddfa_v2_mb05"
    if not folder.is_dir():
        pytest.skip(f"the teacher is not at {folder}")
    return to.Teacher.load(folder)


@pytest.mark.data
def test_the_plain_pass_reproduces_the_labels_and_the_table(shared_data, teacher, capsys):
    data = shared_data / "aflw19k"
    table = to.measure(data, teacher, stride=150, progress=False)
    tta = ev.load_ground_truth("aflw19k-val-teacher-tta", data)
    plain = ev.load_ground_truth("aflw19k-val-teacher", data)
    rows = np.arange(0, len(tta), 150)
    expected = yaw_bin_means(nme(plain.lm68[rows], tta.lm68[rows]), tta.yaw[rows])
    assert table["none"]["balanced"] == pytest.approx(expected["balanced"], abs=1e-4)
    assert table["training"]["all"] > table["none"]["all"]  # warps move the teacher's answer off its TTA label


@pytest.mark.data
def test_a_pipeline_that_does_not_reproduce_the_labels_is_refused(shared_data, teacher, monkeypatch):
    real = to.Teacher.points
    monkeypatch.setattr(to.Teacher, "points", lambda self, crops: real(self, crops) + 0.01)
    with pytest.raises(RuntimeError, match="does not reproduce its labels"):
        to.measure(shared_data / "aflw19k", teacher, stride=400, progress=False)
