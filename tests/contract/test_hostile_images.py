"""Hostile images: degenerate sizes, odd channel counts and depths, corrupt files; alone and inside a folder."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hostile_helpers import one_line_error
from fa3d.runtime.cli_run import main
from fa3d.runtime.detectors.haar import HaarDetector
from tests.helpers.plumbing import blob_frame


def _write_odd_folder(folder):
    """Two good images and every kind of bad one, in name order between them."""
    folder.mkdir()
    cv2.imwrite(str(folder / "a_good.png"), blob_frame((320, 240), (160, 120), (40, 55)))
    cv2.imwrite(str(folder / "b_4x6000.png"), np.full((4, 6000, 3), 128, np.uint8))
    cv2.imwrite(str(folder / "c_gray.png"), cv2.cvtColor(blob_frame((320, 240), (160, 120), (40, 55)),
                                                         cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "d_16bit.png"), blob_frame((320, 240), (160, 120), (40, 55)).astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "e_bgra.png"), cv2.cvtColor(blob_frame((320, 240), (160, 120), (40, 55)),
                                                         cv2.COLOR_BGR2BGRA))
    (folder / "f_empty.png").write_bytes(b"")
    (folder / "g_text.jpg").write_text("not an image\n")
    cv2.imwrite(str(folder / "h_1x1.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / "z_good.png"), blob_frame((320, 240), (170, 110), (40, 55)))


def test_folder_with_degenerate_images_skips_and_counts_them(tmp_path, plumbing_model, blob_detector, capsys):
    _write_odd_folder(tmp_path / "imgs")
    js = tmp_path / "out.jsonl"
    rc = main(["--model", str(plumbing_model), "--source", str(tmp_path / "imgs"), "--json", str(js), "--headless"])
    out = capsys.readouterr().out
    assert rc == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    # the good ones and the 1-channel, 16-bit and 4-channel ones (decoded to 8-bit BGR) are processed
    assert [r["frame"] for r in recs] == [0, 2, 3, 4, 8]
    assert all(len(r["faces"]) == 1 for r in recs)
    assert "decode failures 2" in out and "skipped 2" in out  # empty + text; 4x6000 + 1x1


def test_a_4x6000_image_alone_is_a_clear_source_error(tmp_path, plumbing_model, capsys):
    p = tmp_path / "strip.png"
    cv2.imwrite(str(p), np.full((4, 6000, 3), 128, np.uint8))
    assert main(["--model", str(plumbing_model), "--source", str(p), "--headless"]) == 3
    line = one_line_error(capsys.readouterr().err, "fa-run")
    assert "6000x4" in line and "too small" in line


@pytest.mark.parametrize("content", [b"", b"GIF89a-not-really", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_an_undecodable_image_alone_is_a_clear_source_error(tmp_path, plumbing_model, capsys, content):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    assert main(["--model", str(plumbing_model), "--source", str(p), "--headless"]) == 3
    assert "cannot decode" in one_line_error(capsys.readouterr().err, "fa-run")


@pytest.mark.parametrize("shape", [(4, 6000), (6000, 4), (1, 1), (2, 3)])
def test_haar_detector_finds_nothing_in_degenerate_frames_instead_of_failing(shape):
    dets = HaarDetector().detect(np.zeros((*shape, 3), np.uint8))
    assert dets.boxes.shape == (0, 4)


def test_aligner_on_a_4x6000_frame_returns_no_face(plumbing_model):
    from fa3d.runtime import FaceAligner

    with FaceAligner.from_artifact(plumbing_model) as al:
        assert al.process(np.full((4, 6000, 3), 128, np.uint8)) == []


@pytest.mark.parametrize("frame,what", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10), np.uint8), "(10, 10)"),
    (np.zeros((10, 10, 4), np.uint8), "(10, 10, 4)"),
    (np.zeros((10, 10, 3), np.uint16), "uint16"),
    (np.zeros((10, 10, 3), np.float32), "float32"),
    ([[0, 0, 0]], "list"),
    (None, "NoneType"),
])
def test_process_refuses_non_bgr_frames_with_the_package_error(plumbing_model, frame, what):
    from fa3d.runtime import FaceAligner

    with FaceAligner.from_artifact(plumbing_model) as al, pytest.raises(ValueError, match="frame") as e:
        al.process(frame)
    assert what in str(e.value)


def test_non_contiguous_frames_are_fine(plumbing_model, blob_detector):
    from fa3d.runtime import FaceAligner

    big = blob_frame((640, 480), (320, 240), (80, 110))
    with FaceAligner.from_artifact(plumbing_model) as al:
        faces = al.process(big[::2, ::2])  # a strided view, as a slice of a camera buffer would be
    assert len(faces) == 1
