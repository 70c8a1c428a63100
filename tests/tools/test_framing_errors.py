"""tools.framing_errors: the face's offset and size in the crop, and the NME of each framing group."""

from __future__ import annotations

import numpy as np
import pytest

from fa3d.data.datasets.aflw import protocol_box
from fa3d.data.evaluation import protocols as ev
from tools.framing_errors import framing, main, table


def _square(cx, cy, side):
    """68 points whose tight box is the square of ``side`` about (cx, cy) (corners on the outline)."""
    t = np.linspace(0, 1, 17)
    edges = [np.stack([cx - side / 2 + side * t, np.full(17, cy - side / 2)], 1),
             np.stack([cx - side / 2 + side * t, np.full(17, cy + side / 2)], 1),
             np.stack([np.full(17, cx - side / 2), cy - side / 2 + side * t], 1),
             np.stack([np.full(17, cx + side / 2), cy - side / 2 + side * t], 1)]
    return np.concatenate([np.concatenate(edges), np.zeros((68, 1))], 1)


def _gt():
    box = protocol_box(120, 120)
    side = float(box[2] - box[0])
    lm = np.stack([_square(59.5, 59.5, side), _square(59.5 + 0.2 * side, 59.5, side), _square(59.5, 59.5, 0.7 * side)])
    return ev.GroundTruth("aflw19k-val-teacher-tta", np.array(["a.jpg", "b.jpg", "c.jpg"]), ("a", "b", "c"),
                          np.repeat(box[None], 3, 0), np.array([10.0, 45.0, 10.0]), lm68=lm,
                          ypr=np.array([[10.0, 0, 0], [45.0, 0, 0], [10.0, 0, 0]])), side


def test_offset_and_size_of_the_teacher_face_in_the_crop():
    gt, _ = _gt()
    offset, ratio = framing(gt)
    np.testing.assert_allclose(offset, [0.0, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(ratio, [1.0, 1.0, 0.7], atol=1e-6)


def test_each_group_gets_the_nme_of_its_crops(tmp_path, capsys):
    gt, side = _gt()
    pred = gt.lm68.copy()
    pred[1, :, 0] += 0.02 * side  # 2 % of the box side off: the off-centre crop
    pred[2, :, 0] += 0.7 * 0.05 * side  # 5 % of its own (smaller) box: the small crop
    t = table(gt, ev.Predictions(gt.names, pred, gt.ypr))
    assert t["centred"]["0-30"] == {"nme": pytest.approx(0.0, abs=1e-9), "n": 1}
    assert t["off-centre"]["30-60"]["nme"] == pytest.approx(2.0, rel=1e-6)
    assert t["small"]["0-30"]["nme"] == pytest.approx(5.0, rel=1e-6)
    assert t["other"]["0-30"]["n"] == 0 and np.isnan(t["other"]["0-30"]["nme"])
    assert main([str(tmp_path / "missing.npz"), "--data", str(tmp_path)]) == 2
    assert "framing_errors:" in capsys.readouterr().err
