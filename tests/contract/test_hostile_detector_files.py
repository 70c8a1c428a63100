"""Corrupt user detector files (issue 24): ``--detector`` naming a YuNet or SCRFD ONNX that is garbage, cut
short, empty or another network gives one line and the documented exit code (fa-run and fa-bench 4, fa-calib
2), checked when the detector is loaded; OpenCV's and ONNX Runtime's own exception types are both caught."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fa3d.runtime.default_model import asset_path
from hostile_helpers import one_line_error

KINDS = ("yunet", "scrfd")
DAMAGE = ("garbage", "truncated", "empty", "another_network")


def damaged(folder, kind: str, damage: str):
    """A detector file named for ``kind`` (face_detection_yunet / scrfd_500m_kps) holding ``damage``."""
    real = asset_path("detector/blazeface_short_range.onnx").read_bytes()  # a real ONNX, but not this network
    content = {"garbage": os.urandom(4096), "truncated": real[: len(real) // 2], "empty": b"",
               "another_network": real}[damage]
    p = folder / (f"{damage}_face_detection_yunet.onnx" if kind == "yunet" else f"{damage}_scrfd_500m_kps.onnx")
    p.write_bytes(content)
    return p


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("kind", KINDS)
def test_fa_run_refuses_a_broken_detector_file_with_exit_4(tmp_path, plumbing_model, blob_video, kind, damage,
                                                           capsys):
    from fa3d.runtime.cli_run import main

    det = damaged(tmp_path, kind, damage)
    js = tmp_path / "out.jsonl"
    rc = main(["--model", str(plumbing_model), "--source", str(blob_video), "--detector", str(det),
               "--json", str(js), "--headless"])
    line = one_line_error(capsys.readouterr().err, "fa-run")
    assert rc == 4 and "--detector" in line and det.name in line
    assert not js.exists()


@pytest.mark.parametrize("kind", KINDS)
def test_the_library_raises_detector_error_for_each_damage(tmp_path, kind):
    from fa3d.runtime.detectors import DetectorError, make_detector

    for damage in DAMAGE:
        with pytest.raises(DetectorError, match=kind if damage == "empty" else "."):
            make_detector(str(damaged(tmp_path, kind, damage)))


def test_an_scrfd_file_with_nine_outputs_of_the_wrong_sizes_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from fa3d.runtime.detectors import DetectorError, make_detector

    outs = [helper.make_tensor_value_info(f"o{i}", TensorProto.FLOAT, None) for i in range(9)]
    nodes = [helper.make_node("Constant", [], [f"o{i}"], value=helper.make_tensor(
        f"c{i}", TensorProto.FLOAT, [1, 3], [0.0, 0.0, 0.0])) for i in range(9)]
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 640, 640])
    model = helper.make_model(helper.make_graph(nodes, "nine", [inp], outs),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    p = tmp_path / "scrfd_kps.onnx"
    onnx.save(model, str(p))
    with pytest.raises(DetectorError, match="stride 8"):
        make_detector(str(p))


def test_fa_bench_refuses_a_broken_detector_file_with_exit_4(tmp_path, plumbing_model, blob_video, capsys):
    from fa3d.runtime.bench import main

    det = damaged(tmp_path, "scrfd", "truncated")
    rc = main(["--model", str(plumbing_model), "--batch", "1", "--iters", "1", "--warmup", "0",
               "--video", str(blob_video), "--detector", str(det)])
    err = capsys.readouterr().err
    assert rc == 4 and "Traceback" not in err and "--detector" in err


def test_fa_calib_refuses_a_broken_detector_file_with_exit_2(tmp_path, plumbing_model, capsys):
    import cv2

    from fa3d.calibration.cli import main

    img = tmp_path / "faces"
    img.mkdir()
    cv2.imwrite(str(img / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    det = damaged(tmp_path, "yunet", "garbage")
    rc = main([str(img), "--model", str(plumbing_model), "--out", str(tmp_path / "c.npz"), "--detector", str(det),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and det.name in err
