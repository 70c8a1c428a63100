"""The shipped BlazeFace detector: anchors, decoding, weighted NMS, the window pyramid, and the real model on the
bundled public-domain portrait pasted into frames of several sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime.detectors.blazeface import ANCHORS, RawDetections, decode, weighted_nms
from fa3d.runtime.detectors.blazeface_detector import (BLAZE_TO_TIGHT, BlazeFaceDetector, Window, plan_windows,
                                             window_input)
from fa3d.runtime.default_model import asset_path, sample_path
from fa3d.runtime.detectors import DetectorError, make_detector
from fa3d.runtime.detectors.haar import HaarDetector
from fa3d.runtime.boxes import iou_matrix

PORTRAIT_FACE = np.array([178.0, 81.0, 272.0, 175.0])  # BlazeFace's box on astronaut.png (512x512)


@pytest.fixture(scope="module")
def detector():
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def portrait():
    return cv2.imread(str(sample_path("astronaut.png")))


def face_patch(portrait, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The portrait's head and shoulders scaled so that its face box is ``face_px`` wide, and that box."""
    k = face_px / (PORTRAIT_FACE[2] - PORTRAIT_FACE[0])
    x0, y0, x1, y1 = 130, 30, 330, 260
    patch = cv2.resize(portrait[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    return patch, (PORTRAIT_FACE - [x0, y0, x0, y0]) * k


def paste(frame, patch, box, at) -> np.ndarray:
    h, w = min(patch.shape[0], frame.shape[0] - at[1]), min(patch.shape[1], frame.shape[1] - at[0])
    frame[at[1]:at[1] + h, at[0]:at[0] + w] = patch[:h, :w]
    return box + [at[0], at[1], at[0], at[1]]


def test_anchors_and_decoding():
    assert ANCHORS.shape == (896, 2)
    np.testing.assert_allclose(ANCHORS[0], [4, 4])
    np.testing.assert_allclose(ANCHORS[1], [4, 4])  # 2 anchors per stride-8 cell
    np.testing.assert_allclose(ANCHORS[2], [12, 4])
    np.testing.assert_allclose(ANCHORS[512], [8, 8])  # 6 per stride-16 cell
    np.testing.assert_allclose(ANCHORS[-1], [120, 120])
    reg = np.zeros((896, 16))
    logits = np.full(896, -10.0)
    reg[600, :4] = [3, -2, 40, 50]
    reg[600, 4:6] = [-10, -8]
    logits[600] = 2.0
    d = decode(reg, logits, 0.5)
    c = ANCHORS[600] + [3, -2]
    np.testing.assert_allclose(d.boxes, [[c[0] - 20, c[1] - 25, c[0] + 20, c[1] + 25]])
    np.testing.assert_allclose(d.keypoints[0, 0], ANCHORS[600] + [-10, -8])
    assert d.scores[0] == pytest.approx(1 / (1 + np.exp(-2)))
    assert len(decode(reg, logits, 0.9)) == 0


def test_weighted_nms_averages_a_cluster_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    kps = np.zeros((3, 6, 2))
    d = weighted_nms(RawDetections(boxes, kps, np.array([0.9, 0.6, 0.7])), 0.3)
    assert len(d) == 2 and d.scores.tolist() == [0.9, 0.7]
    np.testing.assert_allclose(d.boxes[0], [0.4, 0, 10.4, 10])  # (0*0.9 + 1*0.6) / 1.5
    np.testing.assert_allclose(d.boxes[1], boxes[2])


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080), (200, 900)])
def test_pyramid_holds_every_face_whole_in_a_window_of_its_level(size):
    w, h = size
    wins = plan_windows(w, h, min_face=40)
    assert wins[0] == Window(0, 0, max(w, h), 0)
    finest = max(v.side for v in wins if v.level == max(x.level for x in wins))
    assert finest <= 40 * 128 / 22 + 1e-6, "a 40 px face is at least 22 input pixels at the finest level"
    rng = np.random.default_rng(0)
    for _ in range(300):
        face = rng.uniform(40, min(w, h) * 0.8)
        x, y = rng.uniform(0, w - face), rng.uniform(0, h - face)
        ok = [v for v in wins if face * 128 / v.side >= 22 and face * 128 / v.side <= 110 * 1.2
              and v.x0 - 1 <= x and x + face <= v.x0 + v.side + 1 and v.y0 - 1 <= y and y + face <= v.y0 + v.side + 1]
        assert ok, f"a {face:.0f} px face at ({x:.0f}, {y:.0f}) lies whole in no window that sees it well"


def test_window_input_maps_back_to_frame_pixels():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)
    # a window almost entirely outside the frame still gives a whole input (a track at the frame's edge)
    assert window_input(frame, Window(-50, 299.6 - 180 + 0.2, 180, 1))[0].shape == (128, 128, 3)
    assert window_input(frame, Window(-179.7, 0, 180, 1))[0].shape == (128, 128, 3)
    assert window_input(frame, Window(10.4, 20.4, 12, 1))[0].shape == (128, 128, 3)  # upscaled, fractional
    for win in (Window(0, 0, 500, 0), Window(100, 50, 200, 1), Window(-60, -40, 180, 1)):
        img, (ox, oy, kx, ky) = window_input(frame, win)
        assert img.shape == (128, 128, 3)
        u, v = 64.0, 64.0  # the input's centre maps to the window's centre
        assert ox + u / kx == pytest.approx(win.x0 + win.side / 2, abs=win.side / 128)
        assert oy + v / ky == pytest.approx(win.y0 + win.side / 2, abs=win.side / 128)


def test_finds_the_portrait_at_many_sizes_and_positions_in_large_frames(detector, portrait):
    for (w, h), face in [((640, 480), 170), ((1280, 720), 60), ((1280, 720), 150), ((1920, 1080), 45),
                         ((1920, 1080), 400)]:
        frame = np.full((h, w, 3), 90, np.uint8)
        patch, box = face_patch(portrait, face)
        at = (int(w * 0.6), int(h * 0.2)) if patch.shape[1] < w * 0.35 else (10, 10)
        truth = paste(frame, patch, box, at)
        d = detector.detect(frame)
        assert len(d.scores) >= 1, f"no face of {face} px in {w}x{h}"
        assert iou_matrix(truth, d.boxes).max() > 0.5, (w, h, face, d.boxes, truth)
        assert d.keypoints.shape[1:] == (6, 2)


def test_several_faces_and_no_face_on_noise(detector, portrait):
    frame = np.full((720, 1280, 3), 120, np.uint8)
    truths = []
    for k, at in enumerate([(40, 100), (380, 300), (700, 60), (1000, 330)]):
        patch, box = face_patch(portrait, 90 + 20 * k)
        truths.append(paste(frame, patch, box, at))
    d = detector.detect(frame)
    assert len(d.scores) == 4
    assert (iou_matrix(np.array(truths), d.boxes).max(1) > 0.5).all()
    noise = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
    assert len(detector.detect(noise).scores) == 0


def test_scan_bounds_the_work_and_sweeps_the_frame(portrait):
    det = BlazeFaceDetector(max_windows=10)
    frame = np.full((1080, 1920, 3), 100, np.uint8)
    patch, box = face_patch(portrait, 50)
    truth = paste(frame, patch, box, (1500, 900))
    n = det.sweep_calls(1920, 1080)
    assert n > 1
    found = False
    for _ in range(n):
        d = det.scan(frame)
        assert det.last_windows <= 10
        found |= len(d.scores) > 0 and iou_matrix(truth, d.boxes).max() > 0.5
    assert found, "a small face far from the centre is found within one sweep"


def test_check_regions(detector, portrait):
    frame = np.full((480, 640, 3), 100, np.uint8)
    patch, box = face_patch(portrait, 120)
    truth = BLAZE_TO_TIGHT.apply(paste(frame, patch, box, (300, 100)))[0]
    r = detector.check_regions(frame, np.array([truth + 5, [20, 20, 120, 120]]))
    assert r.scores[0] > 0.5 and iou_matrix(truth, r.boxes[:1])[0, 0] > 0.7
    assert r.scores[1] == 0 and np.isnan(r.boxes[1]).all()


def test_make_detector_default_and_haar():
    assert isinstance(make_detector(), BlazeFaceDetector)
    assert isinstance(make_detector("haar"), HaarDetector)
    with pytest.raises(ValueError, match="blazeface"):
        make_detector("nope")
    with pytest.raises(DetectorError, match="--detector haar"):
        BlazeFaceDetector("/nonexistent.onnx")


def test_shipped_detector_has_licence_and_notice():
    folder = asset_path("detector")
    assert "Apache License" in (folder / "LICENSE").read_text()
    notice = (folder / "NOTICE").read_text()
    assert "mediapipe 0.10.21" in notice and "face_detection_short_range.tflite" in notice
