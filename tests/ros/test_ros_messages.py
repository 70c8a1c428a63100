"""fa3d.runtime.ros message layer: hri_msgs definitions, image codecs, REP-155 frames, frame_messages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the fa3d[ros] extra is not installed")

from fa3d.runtime.camera import CameraIntrinsics, face_model_points  # noqa: E402
from fa3d.runtime.results import FaceResult, HeadPose  # noqa: E402
from fa3d.runtime.ros import hri_msgs  # noqa: E402
from fa3d.runtime.ros.bag_source import camera_info_topic  # noqa: E402
from fa3d.runtime.ros.frames import face_frames, landmarks_in_metres, quaternion_xyzw  # noqa: E402
from fa3d.runtime.ros.images import BadImage, UnsupportedEncoding, image_message, to_bgr  # noqa: E402
from fa3d.runtime.ros.messages import Header, MessageOptions, face_crops, frame_messages  # noqa: E402
from fa3d.runtime.schema import mean_shape  # noqa: E402

STORE = hri_msgs.typestore()


def test_hri_definitions_round_trip_through_cdr():
    codes = [c for _, c in hri_msgs.LANDMARK_CODES]
    assert sorted(codes) == list(range(70)), "every FacialLandmarks code 0..69 exactly once"
    fl = STORE.types[hri_msgs.FACIAL_LANDMARKS]
    assert (fl.RIGHT_PUPIL, fl.LEFT_PUPIL, fl.RIGHT_EYE_OUTSIDE, fl.MENTON) == (68, 69, 36, 8)
    hdr = STORE.types["std_msgs/msg/Header"](stamp=STORE.types["builtin_interfaces/msg/Time"](sec=3, nanosec=4),
                                             frame_id="cam")
    msg = STORE.types[hri_msgs.IDS_LIST](header=hdr, ids=["f0001", "f0002"])
    back = STORE.deserialize_cdr(STORE.serialize_cdr(msg, hri_msgs.IDS_LIST), hri_msgs.IDS_LIST)
    assert back.ids == ["f0001", "f0002"] and back.header.stamp.nanosec == 4
    with pytest.raises(Exception):  # the landmarks array is fixed at 70
        point = STORE.types[hri_msgs.POINT_2D](x=0.0, y=0.0, c=0.0)
        STORE.serialize_cdr(fl(header=hdr, landmarks=[point] * 68, height=1, width=1), hri_msgs.FACIAL_LANDMARKS)


def _raw(img, encoding, pad=0):
    h, w = img.shape[:2]
    c = 1 if img.ndim == 2 else img.shape[2]
    step = w * c + pad
    buf = np.zeros((h, step), np.uint8)
    buf[:, : w * c] = img.reshape(h, w * c)
    return STORE.types["sensor_msgs/msg/Image"](header=STORE.types["std_msgs/msg/Header"](
        stamp=STORE.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""), height=h, width=w,
        encoding=encoding, is_bigendian=0, step=step, data=buf.reshape(-1))


def test_raw_encodings_decode_to_the_same_bgr_image():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    im = "sensor_msgs/msg/Image"
    assert np.array_equal(to_bgr(_raw(bgr, "bgr8", pad=5), im), bgr), "row padding (step) is honoured"
    assert np.array_equal(to_bgr(_raw(bgr[..., ::-1].copy(), "rgb8"), im), bgr)
    assert np.array_equal(to_bgr(_raw(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA), "rgba8"), im), bgr)
    assert np.array_equal(to_bgr(_raw(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), "bgra8"), im), bgr)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(to_bgr(_raw(gray, "mono8"), im), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    flat = np.full((4, 8, 3), (40, 120, 200), np.uint8)  # a flat colour survives 4:2:2 subsampling
    b, g, r = (v / 255 for v in (40, 120, 200))  # BT.601 video range, as cameras send it
    y, cb, cr = (16 + 65.481 * r + 128.553 * g + 24.966 * b, 128 - 37.797 * r - 74.203 * g + 112 * b,
                 128 + 112 * r - 93.786 * g - 18.214 * b)
    yuyv = np.tile(np.round([y, cb, y, cr]).astype(np.uint8), (4, 4)).reshape(4, 8, 2)  # Y0 U Y1 V
    uyvy = np.tile(np.round([cb, y, cr, y]).astype(np.uint8), (4, 4)).reshape(4, 8, 2)  # U Y0 V Y1
    for enc, data in (("yuyv", yuyv), ("yuv422_yuy2", yuyv), ("yuv422", uyvy)):
        assert np.abs(to_bgr(_raw(data, enc), im).astype(int) - flat).max() <= 3, enc


def test_bad_images_raise_clear_errors():
    im = "sensor_msgs/msg/Image"
    with pytest.raises(UnsupportedEncoding, match=r"'16UC1'.*bgr8"):
        to_bgr(_raw(np.zeros((2, 2, 2), np.uint8), "16UC1"), im)
    short = _raw(np.zeros((4, 4, 3), np.uint8), "bgr8")
    short.data = short.data[:20]
    with pytest.raises(BadImage, match="holds 20 bytes"):
        to_bgr(short, im)
    comp = STORE.types["sensor_msgs/msg/CompressedImage"](header=short.header, format="jpeg",
                                                           data=np.frombuffer(b"not a jpeg", np.uint8))
    with pytest.raises(BadImage, match="does not decode"):
        to_bgr(comp, "sensor_msgs/msg/CompressedImage")
    comp.format = "theora"
    with pytest.raises(UnsupportedEncoding, match="theora"):
        to_bgr(comp, "sensor_msgs/msg/CompressedImage")


def test_camera_info_follows_image_transport_namespaces():
    assert camera_info_topic("/camera/image_raw") == "/camera/camera_info"
    assert camera_info_topic("/camera/image_raw/compressed") == "/camera/camera_info"
    assert camera_info_topic("/robot/head/rgb/image_rect_color") == "/robot/head/rgb/camera_info"
    assert camera_info_topic("/image") == "/camera_info"
    assert camera_info_topic("image") == "camera_info"


def _rot(axis, deg):
    return cv2.Rodrigues(np.asarray(axis, np.float64) * np.radians(deg))[0]


def test_quaternion_matches_the_rotation():
    rng = np.random.default_rng(1)
    for _ in range(50):
        r = _rot(rng.normal(size=3) / np.linalg.norm(rng.normal(size=3)), rng.uniform(0, 180))
        r = cv2.Rodrigues(cv2.Rodrigues(r)[0])[0]
        x, y, z, w = quaternion_xyzw(r)
        back = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        np.testing.assert_allclose(back, r, atol=1e-9)
    np.testing.assert_allclose(quaternion_xyzw(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0], atol=1e-12)


def _pose(r=np.eye(3), t=(0.0, 0.0, 1.0)):
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = r, t
    return HeadPose(rvec=cv2.Rodrigues(r)[0].ravel(), tvec=np.asarray(t, float), matrix=m)


def test_rep155_frames_of_a_face_looking_at_the_camera():
    origin, face, gaze = face_frames(_pose())
    np.testing.assert_allclose(origin, face_model_points()[27] + [0, 0, 1.0])
    # the face's x points out of the face, at the camera (-z of the optical frame); z up (-y); y the person's
    # left, which is the image's right (+x)
    np.testing.assert_allclose(face, [[0, 1, 0], [0, 0, -1], [-1, 0, 0]], atol=1e-12)
    # gaze: z along the gaze (at the camera), x the person's right (image left), y down
    np.testing.assert_allclose(gaze, np.diag([-1.0, 1.0, -1.0]), atol=1e-12)
    for r in (face, gaze):
        assert np.isclose(np.linalg.det(r), 1.0)
    # a head turned 30 deg to the person's left (yaw about the vertical axis) turns the face's x with it
    _, face_turned, _ = face_frames(_pose(_rot([0, 1, 0], -30)))
    assert face_turned[0, 0] > 0.4, "turning to the person's left points the face to the image's right"


def test_landmarks_in_metres_back_project_onto_the_image():
    intr = CameraIntrinsics(500.0, 500.0, 320.0, 240.0)
    lm = np.column_stack([np.linspace(250, 390, 68), np.linspace(180, 300, 68), np.linspace(-20, 20, 68)])
    pts = landmarks_in_metres(lm, _pose(t=(0.0, 0.0, 0.8)), intr)
    proj = pts[:, :2] / pts[:, 2:] * 500.0 + [320.0, 240.0]
    np.testing.assert_allclose(proj, lm[:, :2], atol=1e-6)
    assert pts[-1, 2] < pts[0, 2], "larger z (nearer the camera) is smaller depth"
    assert np.all((pts[:, 2] > 0.7) & (pts[:, 2] < 0.9))


def _face(track_id=3, conf=0.9, centre=(320.0, 240.0), size=120.0, roll_deg=0.0):
    m = np.asarray(mean_shape(), np.float64) * np.array([1.0, -1.0, 1.0])
    xy = m[:, :2] - (m[:, :2].min(0) + m[:, :2].max(0)) / 2
    xy = xy / np.ptp(xy, axis=0).max() * size
    a = np.radians(roll_deg)
    xy = xy @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    lm = np.column_stack([xy + centre, m[:, 2] * 10]).astype(np.float32)
    box = np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)])
    return FaceResult(landmarks=lm, dense=np.zeros((0, 3), np.float32), yaw_pitch_roll=np.zeros(3, np.float32),
                      rotation=np.eye(3, dtype=np.float32), confidence=conf, box=box, track_id=track_id,
                      head_pose_cam=_pose())


def test_frame_messages_carry_the_header_and_rep155_content():
    image = np.full((480, 640, 3), 90, np.uint8)
    face = _face()
    intr = CameraIntrinsics(500.0, 500.0, 319.5, 239.5)
    msgs = frame_messages([face], Header(1_700_000_000_000_000_123, "cam_optical"), image, intr, STORE)
    topics = [m.topic for m in msgs]
    assert topics == ["/humans/faces/tracked", "/humans/faces/f0003/roi", "/humans/faces/f0003/landmarks",
                      "/humans/faces/f0003/cropped", "/humans/faces/f0003/aligned", "/tf", "/fa3d/landmarks_3d"]
    for m in msgs:
        hdrs = [m.msg.header] if hasattr(m.msg, "header") else [t.header for t in getattr(m.msg, "transforms", [])]
        hdrs += [mk.header for mk in getattr(m.msg, "markers", [])]
        assert hdrs, m.topic
        for h in hdrs:
            assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (1_700_000_000, 123, "cam_optical"), m.topic
        STORE.serialize_cdr(m.msg, m.msgtype)  # every message is a valid instance of its type
    assert msgs[0].msg.ids == ["f0003"]
    lms = msgs[2].msg
    assert (lms.width, lms.height, len(lms.landmarks)) == (640, 480, 70)
    got = np.array([[p.x * 640 - 0.5, p.y * 480 - 0.5] for p in lms.landmarks])
    np.testing.assert_allclose(got[:68], face.landmarks[:, :2], atol=1e-3)
    np.testing.assert_allclose(got[68], face.landmarks[36:42, :2].mean(0), atol=1e-3)  # the person's right pupil
    np.testing.assert_allclose(got[69], face.landmarks[42:48, :2].mean(0), atol=1e-3)
    assert all(p.c == pytest.approx(0.9) for p in lms.landmarks)
    roi = msgs[1].msg
    np.testing.assert_allclose([roi.xmin * 640 - 0.5, roi.ymin * 480 - 0.5, roi.xmax * 640 - 0.5, roi.ymax * 480 - 0.5],
                               face.box, atol=1e-3)
    assert [t.child_frame_id for t in msgs[5].msg.transforms] == ["face_f0003", "gaze_f0003"]
    marker = msgs[6].msg.markers
    assert marker[0].action == marker[0].DELETEALL and len(marker[1].points) == 68 and marker[1].id == 3
    for crop in (msgs[3].msg, msgs[4].msg):
        assert (crop.width, crop.height, crop.encoding, crop.step) == (128, 128, "bgr8", 384)


def test_faces_out_of_the_image_and_without_intrinsics():
    image = np.zeros((100, 100, 3), np.uint8)
    face = _face(track_id=None, centre=(95.0, 50.0), size=60.0)
    msgs = frame_messages([face], Header(5), image, None, STORE,
                          MessageOptions(cropped=False, aligned=True, crop_size=32))
    assert [m.topic for m in msgs] == ["/humans/faces/tracked", "/humans/faces/n0/roi", "/humans/faces/n0/landmarks",
                                       "/humans/faces/n0/aligned"], "no /tf and no markers without intrinsics"
    pts = msgs[2].msg.landmarks
    xs = np.array([p.x for p in pts])
    assert xs.max() <= 1.0 and any(p.c == 0.0 for p in pts) and any(p.c > 0 for p in pts), \
        "points outside the image are clipped to its border with c = 0"
    assert msgs[1].msg.xmax == 1.0
    empty = frame_messages([], Header(5), image, CameraIntrinsics(100, 100, 50, 50), STORE)
    assert [m.topic for m in empty] == ["/humans/faces/tracked", "/fa3d/landmarks_3d"]
    assert empty[0].msg.ids == [] and len(empty[1].msg.markers) == 1, "an empty frame clears the markers"


def test_aligned_crop_levels_the_eyes():
    image = np.full((480, 640, 3), 90, np.uint8)
    face = _face(roll_deg=25.0)
    left, right = face.landmarks[36:42, :2].mean(0), face.landmarks[42:48, :2].mean(0)
    for x, y in (left, right):  # mark both eye centres in the image
        cv2.circle(image, (int(round(x)), int(round(y))), 4, (0, 0, 255), -1)
    cropped, aligned = face_crops(image, face, 128)
    for crop, level in ((cropped, False), (aligned, True)):
        mask = (crop[..., 2] > 200) & (crop[..., 0] < 50) & (crop[..., 1] < 50)
        n, labels = cv2.connectedComponents(mask.astype(np.uint8))
        centres = [np.argwhere(labels == k).mean(0) for k in range(1, n)]
        assert len(centres) == 2
        dy = abs(centres[0][0] - centres[1][0])
        assert (dy < 2.0) if level else (dy > 15.0), (level, dy)
    m = image_message(STORE, STORE.types["std_msgs/msg/Header"](
        stamp=STORE.types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id=""), aligned)
    assert np.array_equal(to_bgr(m, "sensor_msgs/msg/Image"), aligned)
