"""Frame sources (files, folders, live reconnection), detectors and their box mapping, PnP head pose."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from fa3d.runtime.boxes import BoxMapping
from fa3d.runtime.detectors import DetectorError, make_detector
from fa3d.runtime.detectors.five_points import box_from_five_points
from fa3d.runtime.detectors.haar import HAAR_TO_TIGHT, HaarDetector
from fa3d.runtime.detectors.scrfd import decode_scrfd
from fa3d.runtime.detectors.yunet import parse_yunet
from fa3d.runtime.pose import euler_to_matrix, matrix_to_euler
from fa3d.runtime.preprocess import landmark_box
from fa3d.runtime.camera import CameraIntrinsics, face_model_points, solve_head_pose
from fa3d.runtime.schema import mean_shape
from fa3d.runtime.sources import (ImageSource, LiveSource, SourceError, VideoFileSource, jetson_csi_pipeline,
                                  open_source)
from fa3d.runtime.boxes import iou_matrix
from tests.helpers.plumbing import blob_frame


def test_video_file_frames_and_timestamps(blob_video):
    with open_source(str(blob_video)) as src:
        assert isinstance(src, VideoFileSource) and src.fps == pytest.approx(30.0)
        frames = list(src)
    assert len(frames) == 30 and frames[0].image.shape == (480, 640, 3)
    assert frames[3].timestamp_ms == pytest.approx(100.0)


def test_missing_and_corrupt_inputs(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(bad))
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))


def test_folder_skips_undecodable_frames(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), blob_frame(size=(64, 48), centre=(32, 24), axes=(10, 12)))
    (tmp_path / "f2.png").write_bytes(b"not a png")
    src = open_source(str(tmp_path))
    assert isinstance(src, ImageSource)
    idx = [f.index for f in src]
    assert idx == [0, 1, 3] and src.stats.decode_failures == 1


def test_camera_that_cannot_be_opened():
    with pytest.raises(SourceError, match="camera 97: cannot open"):
        open_source(97)


class FakeCap:
    def __init__(self, frames, opened=True):
        self.frames, self.opened = frames, opened

    def isOpened(self):
        return self.opened

    def read(self):
        if self.frames > 0:
            self.frames -= 1
            return True, np.zeros((4, 4, 3), np.uint8)
        return False, None

    def get(self, prop):
        return 0

    def release(self):
        self.opened = False


def test_live_source_reopens_with_backoff():
    # the camera delivers 3 frames, disappears (2 failed reopen attempts), comes back with 2 more frames
    caps = iter([FakeCap(3), FakeCap(0, opened=False), FakeCap(0, opened=False), FakeCap(2)])
    sleeps = []
    src = LiveSource(lambda: next(caps, FakeCap(0, opened=False)), "fake camera", sleep=sleeps.append,
                     reconnect_timeout_s=1e9)
    frames = []
    with pytest.raises(StopIteration):
        it = iter(src)
        while True:
            frames.append(next(it))
            if len(frames) == 5:
                raise StopIteration
    assert len(frames) == 5 and [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert sleeps == [0.1, 0.2, 0.4] and src.stats.reconnects == 1


def test_live_source_gives_up_after_timeout():
    t = [0.0]

    def sleep(s):
        t[0] += s

    src = LiveSource(iter([FakeCap(1)] + [FakeCap(0, opened=False)] * 100).__next__, "fake camera",
                     sleep=sleep, clock=lambda: t[0], reconnect_timeout_s=5.0)
    it = iter(src)
    next(it)
    with pytest.raises(SourceError, match="not back after 5 s"):
        next(it)


def test_source_kinds_and_jetson_pipeline(tmp_path):
    p = jetson_csi_pipeline(sensor_id=1, width=640, height=480, fps=60)
    assert p.startswith("nvarguscamerasrc sensor-id=1") and "appsink" in p and "framerate=(fraction)60/1" in p


# ---------------------------------------------------------------- detectors


def _read_pts(path):
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.array(lines, float).reshape(-1, 2) - 1.0  # iBUG .pts are 1-based


def _real_faces(root):
    """Near-frontal real faces of the format samples with their tight 68-point boxes."""
    sio = pytest.importorskip("scipy.io")
    out = [(cv2.imread(str(root / "ibug_pts" / "takeo.ppm")),
            landmark_box(_read_pts(root / "ibug_pts" / "takeo.pts"))[0])]
    for name in ("aflw2000_3d/image00002", "300w_lp/IBUG_image_008_1_0"):
        m = sio.loadmat(str(root / (name + ".mat")))
        pts = m["pt3d_68"][:2].T if "pt3d_68" in m else m["pt2d"].T
        out.append((cv2.imread(str(root / (name + ".jpg"))), landmark_box(pts - 1.0)[0]))  # MATLAB: 1-based
    return out


def test_haar_box_mapping_on_real_faces(format_samples):
    det = HaarDetector()
    raw_ious, mapped_ious = [], []
    for img, tight in _real_faces(format_samples):
        d = det.detect(img)
        assert len(d.boxes), "the cascade finds these near-frontal faces"
        mapped = d.boxes[np.argmax(iou_matrix(d.boxes, tight)[:, 0])]
        mapped_ious.append(iou_matrix(mapped, tight)[0, 0])
        raw_ious.append(iou_matrix(_unmap(mapped), tight)[0, 0])
    assert min(mapped_ious) > 0.7, mapped_ious
    assert np.mean(mapped_ious) > np.mean(raw_ious) + 0.1, (mapped_ious, raw_ious)


def _unmap(b):
    m = HAAR_TO_TIGHT
    w, h = (b[2] - b[0]) / m.sw, (b[3] - b[1]) / m.sh
    cx, cy = (b[0] + b[2]) / 2 - m.dx * w, (b[1] + b[3]) / 2 - m.dy * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def test_box_mapping_fit_recovers_a_known_mapping():
    rng = np.random.default_rng(0)
    d = rng.uniform(0, 300, (50, 2))
    d = np.c_[d, d + rng.uniform(50, 150, (50, 1))]
    truth = BoxMapping(dx=0.02, dy=0.14, sw=0.85, sh=0.83)
    fit = BoxMapping.fit(d, truth.apply(d))
    assert fit.dx == pytest.approx(0.02) and fit.dy == pytest.approx(0.14) and fit.sw == pytest.approx(0.85)


def test_five_point_adapters_give_tight_landmark_boxes():
    # a synthetic face: the mean shape scaled, shifted, rolled 10 deg; its five keypoints as YuNet gives them
    m = np.asarray(mean_shape(), float)[:, :2] * np.array([1, -1]) * 60
    a = np.radians(10)
    lm = m @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + [320, 240]
    five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    tight = landmark_box(lm)[0]
    row = np.r_[[0, 0, 10, 10], five.ravel(), 0.9][None]
    det = parse_yunet(row)
    np.testing.assert_allclose(det.boxes[0], tight, atol=0.5)
    np.testing.assert_allclose(box_from_five_points(five[None])[0], tight, atol=0.5)
    assert len(parse_yunet(None).boxes) == 0


def test_scrfd_decoding_of_synthetic_outputs():
    size = 64
    outs = []
    for s in (8, 16, 32):
        n = (size // s) ** 2 * 2
        outs.append(np.zeros((n, 1), np.float32))
    dists, kpss = [], []
    for s in (8, 16, 32):
        n = (size // s) ** 2 * 2
        dists.append(np.ones((n, 4), np.float32))
        kpss.append(np.zeros((n, 10), np.float32))
    # one anchor at stride 16, grid cell (1, 2) -> centre (16, 32), box +-2 strides, keypoints of a face
    g = size // 16
    a = (2 * g + 1) * 2
    outs[1][a] = 0.9
    dists[1][a] = 2
    five = np.array([[-0.5, -0.3], [0.5, -0.3], [0, 0.1], [-0.4, 0.6], [0.4, 0.6]], np.float32)
    kpss[1][a] = five.ravel()
    det = decode_scrfd(outs + dists + kpss, size, scale=2.0, score_threshold=0.5, nms_threshold=0.4)
    assert len(det.boxes) == 1 and det.scores[0] == pytest.approx(0.9)
    expected_kps = (five * 16 + [16, 32]) * 2.0
    np.testing.assert_allclose(det.boxes[0], box_from_five_points(expected_kps[None])[0], atol=1e-6)


def test_make_detector_specs(tmp_path):
    assert isinstance(make_detector("haar"), HaarDetector)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("mtcnn")
    with pytest.raises(DetectorError, match="yunet detector file not found"):
        make_detector(str(tmp_path / "face_detection_yunet.onnx"))


# ---------------------------------------------------------------- PnP and intrinsics


def test_pnp_recovers_a_known_head_pose():
    intr = CameraIntrinsics.from_fov(640, 480, 60.0)
    obj = face_model_points()
    ypr = np.array([20.0, -10.0, 5.0])
    r_pkg = euler_to_matrix(ypr)
    f = np.diag([1.0, -1.0, -1.0])
    r_cv = f @ r_pkg @ f
    t = np.array([0.05, -0.02, 0.7])
    img, _ = cv2.projectPoints(obj, cv2.Rodrigues(r_cv)[0], t, intr.matrix(), None)
    pose = solve_head_pose(img.reshape(-1, 2), intr)
    np.testing.assert_allclose(pose.tvec, t, atol=1e-3)
    rec = f @ cv2.Rodrigues(pose.rvec)[0] @ f
    np.testing.assert_allclose(matrix_to_euler(rec), ypr, atol=0.1)
    np.testing.assert_allclose(pose.matrix[:3, 3], t, atol=1e-3)


def test_intrinsics_file(tmp_path):
    p = tmp_path / "cam.json"
    p.write_text(json.dumps({"fx": 500, "fy": 501, "cx": 319.5, "cy": 239.5}))
    assert CameraIntrinsics.load(p).matrix()[1, 1] == 501
    p.write_text(json.dumps({"fx": 500}))
    with pytest.raises(ValueError, match="fx, fy, cx, cy"):
        CameraIntrinsics.load(p)
    with pytest.raises(ValueError, match="field of view"):
        CameraIntrinsics.from_fov(640, 480, 200)
