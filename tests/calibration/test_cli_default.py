"""fa-calib: calibration sets from images, videos, fa-label folders and data sets."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fa3d.calibration import cli
from fa3d.calibration.calibset import load_calibration_set


class _StubDetector:
    def detect(self, image):
        from fa3d.runtime.detectors import Detections
        h, w = image.shape[:2]
        return Detections(boxes=np.array([[w * 0.3, h * 0.3, w * 0.7, h * 0.7]]), scores=np.array([0.9]))


@pytest.fixture()
def stub_detector(monkeypatch):
    import fa3d.runtime.detectors as detectors
    monkeypatch.setattr(detectors, "make_detector", lambda spec="haar": _StubDetector())


def test_cli_builds_a_set(tmp_path, tiny_onnx, preprocess_config, stub_detector, capsys):
    from fa3d.data.datasets.synthetic import synth_faces
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(synth_faces(5, seed=2, size=64)):
        cv2.imwrite(str(folder / f"{i}.jpg"), f.image)
    out = tmp_path / "calib.npz"
    assert cli.main([str(folder), "--model", str(tiny_onnx), "--out", str(out), "--max", "3", "--json",
                     "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 3 and summary["input_size"] == 32
    assert len(load_calibration_set(out, preprocess_config)) == 3
    assert cli.main([str(folder), "--model", str(tiny_onnx), "--out", str(tmp_path / "s.npz"), "--max", "2",
                     "--spread-yaw", "--no-progress"]) == 0
    assert "predicted yaw" in capsys.readouterr().out


def test_cli_errors(tmp_path, tiny_onnx, stub_detector, capsys):
    assert cli.main([str(tmp_path / "missing"), "--model", str(tiny_onnx), "--out", str(tmp_path / "x.npz")]) == 2
    assert "expected a folder" in capsys.readouterr().err
    assert cli.main([str(tmp_path), "--model", str(tmp_path / "no.onnx"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err  # read once: a second read would see nothing
    assert err.startswith("fa-calib: ") and "no.onnx.json: metadata file not found" in err and "JSON sidecar" in err
    assert not (tmp_path / "x.npz").exists()


def test_cli_help_explains_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for opt in ("--model", "--out", "--max", "--every", "--detector", "--spread-yaw", "--json"):
        assert opt in text


def test_cli_keeps_the_labels_of_an_fa_label_folder(tmp_path, tiny_onnx, preprocess_config, capsys):
    from fa3d.data.datasets.synthetic import synth_faces
    from fa3d.data.datasets.labelled import write_labelled

    folder = tmp_path / "labelled"
    (folder / "images").mkdir(parents=True)
    faces = synth_faces(4, seed=5, size=64)
    for i, f in enumerate(faces):
        cv2.imwrite(str(folder / "images" / f"{i}.png"), f.image)
    write_labelled(folder, teacher="synthetic-test", image_dir="images", names=[f"{i}.png" for i in range(4)],
                   lm68=[f.landmarks for f in faces], ypr=[f.ypr for f in faces], dense=np.zeros((4, 5, 3)),
                   confidence=np.ones(4), boxes=[f.box for f in faces])
    out = tmp_path / "val.npz"
    assert cli.main([str(folder), "--model", str(tiny_onnx), "--out", str(out), "--no-progress"]) == 0
    cs = load_calibration_set(out, preprocess_config)
    assert len(cs) == 4 and cs.landmarks is not None and cs.ypr is not None
    np.testing.assert_allclose(cs.ypr, [f.ypr for f in faces], atol=1e-4)


def test_cli_dataset_keeps_teacher_labels(aflw19k, tmp_path, tiny_onnx, preprocess_config, capsys):
    """--dataset aflw19k: a labelled set (teacher 68 points + pose) from every K-th crop of a split."""
    out = tmp_path / "val.npz"
    assert cli.main([str(aflw19k), "--dataset", "aflw19k", "--split", "val", "--stride", "100", "--max", "12",
                     "--model", str(tiny_onnx), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 12 and "stride 100" in summary["source"]
    cs = load_calibration_set(out, preprocess_config)
    assert cs.landmarks is not None and cs.ypr is not None
    s = preprocess_config.input_size
    # the teacher's tight box is enlarged by the sqrt(2) rule: the points sit well inside the crop
    assert (cs.landmarks[..., :2] > 0).all() and (cs.landmarks[..., :2] < s).all()
    assert np.abs(cs.ypr).max() <= 100
    with np.load(aflw19k / "labels.npz") as z:
        val_names = set(z["names"][z["split"] == "val"][::100].tolist())
    assert set(cs.names) <= val_names
    assert cli.main([str(aflw19k), "--dataset", "aflw19k", "--stride", "0", "--model", str(tiny_onnx),
                     "--out", str(tmp_path / "x.npz")]) == 2
    assert "--stride: must be an integer >= 1" in capsys.readouterr().err
    assert cli.main([str(aflw19k), "--split", "val", "--model", str(tiny_onnx), "--out", str(tmp_path / "x.npz")]) == 2
    assert "give --dataset too" in capsys.readouterr().err
