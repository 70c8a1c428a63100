"""fa-ros-node's logic against a STAND-IN rclpy (fake_rclpy.py): not a ROS 2 run. It checks what the node
subscribes to, what it publishes for real faces (the sample clip), publisher lifetimes, and its exit codes."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the fa3d[ros] extra is not installed")

import fake_rclpy  # noqa: E402
from ros_helpers import K, sample_frames, stamp_of  # noqa: E402

from fa3d.runtime.ros import hri_msgs  # noqa: E402
from fa3d.runtime.ros import node as node_mod  # noqa: E402

STORE = hri_msgs.typestore()


@pytest.fixture
def ros(monkeypatch):
    """The stand-in message packages in sys.modules and a stand-in rclpy in the node module."""
    for name, mod in fake_rclpy.message_modules().items():
        monkeypatch.setitem(sys.modules, name, mod)

    def install(overrides=None, spin=None):
        rclpy = fake_rclpy.make_rclpy(overrides, spin)
        monkeypatch.setattr(node_mod, "rclpy", rclpy)
        monkeypatch.setattr(node_mod, "rclpy_qos", rclpy.qos)
        return rclpy
    return install


@pytest.fixture(scope="module")
def frames():
    from fa3d.runtime.default_model import DefaultModelMissing

    try:
        return sample_frames(5)
    except DefaultModelMissing:
        pytest.skip("the bundled sample clip is not installed")


def _header(i, frame_id="cam_optical"):
    t = STORE.types
    s = stamp_of(i)
    return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=s % 10**9),
                                    frame_id=frame_id)


def image_bytes(i, img, encoding="bgr8") -> bytes:
    h, w = img.shape[:2]
    msg = STORE.types["sensor_msgs/msg/Image"](header=_header(i), height=h, width=w, encoding=encoding,
                                               is_bigendian=0, step=w * 3, data=img.reshape(-1))
    return STORE.serialize_cdr(msg, "sensor_msgs/msg/Image").tobytes()


def info_bytes(k=K) -> bytes:
    fx, fy, cx, cy = k
    t = STORE.types
    msg = t["sensor_msgs/msg/CameraInfo"](
        header=_header(0), height=480, width=640, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return STORE.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo").tobytes()


def _decoded(pub, msgtype):
    return [STORE.deserialize_cdr(b, msgtype) for b in pub.sent]


def test_node_subscribes_with_sensor_qos_and_publishes_rep155(ros, frames):
    rclpy = ros({"image_topic": "/head/rgb/image_raw", "crop_size": 64})
    rclpy.init()
    node = rclpy.create_node("t")
    logic = node_mod.FaceNode(node)
    try:
        image_sub, info_sub = node.subscriptions
        assert (image_sub.topic, info_sub.topic) == ("/head/rgb/image_raw", "/head/rgb/camera_info")
        assert image_sub.msg_type.__name__ == "Image" and info_sub.msg_type.__name__ == "CameraInfo"
        assert image_sub.qos == info_sub.qos == fake_rclpy.SENSOR_DATA and image_sub.raw and info_sub.raw
        info_sub.callback(info_bytes())
        for i, img in enumerate(frames):
            image_sub.callback(image_bytes(i, img))
            assert logic.aligner.wait_idle(30)  # one frame at a time: nothing is dropped
        black = np.zeros_like(frames[0])
        image_sub.callback(image_bytes(len(frames), black))  # the face leaves
        assert logic.aligner.wait_idle(30)
    finally:
        logic.close()

    tracked = _decoded(node.publishers["/humans/faces/tracked"], hri_msgs.IDS_LIST)
    assert [m.ids for m in tracked] == [["f0000"]] * len(frames) + [[]]
    assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in tracked] == \
        [stamp_of(i) for i in range(len(frames) + 1)]
    assert all(m.header.frame_id == "cam_optical" for m in tracked)
    face_pubs = {p.topic: p for p in node.all_publishers if "/f0000/" in p.topic}
    assert set(face_pubs) == {f"/humans/faces/f0000/{w}" for w in ("roi", "landmarks", "cropped", "aligned")}
    assert all(p.destroyed for p in face_pubs.values()), "per-face publishers end with the track"
    assert all(len(p.sent) == len(frames) for p in face_pubs.values())
    crops = _decoded(face_pubs["/humans/faces/f0000/cropped"], "sensor_msgs/msg/Image")
    assert (crops[0].width, crops[0].height) == (64, 64)

    # the same frames through FaceAligner in VIDEO mode: LIVE_STREAM one frame at a time gives the same faces
    from fa3d.runtime import FaceAligner, FaceAlignerOptions, RunningMode

    with FaceAligner.from_artifact(None, FaceAlignerOptions(mode=RunningMode.VIDEO)) as aligner:
        want = [aligner.process_video(img, stamp_of(i) / 1e6)[0].landmarks for i, img in enumerate(frames)]
    got = _decoded(face_pubs["/humans/faces/f0000/landmarks"], hri_msgs.FACIAL_LANDMARKS)
    for g, w in zip(got, want):
        xy = np.array([[p.x * 640 - 0.5, p.y * 480 - 0.5] for p in g.landmarks[:68]])
        np.testing.assert_allclose(xy, w[:, :2], atol=0.01)
    tf = _decoded(node.publishers["/tf"], "tf2_msgs/msg/TFMessage")
    assert len(tf) == len(frames), "CameraInfo gives the head pose in metres"
    assert [t.child_frame_id for t in tf[0].transforms] == ["face_f0000", "gaze_f0000"]
    assert all(t.header.frame_id == "cam_optical" for m in tf for t in m.transforms)


def test_node_without_camera_info_and_with_bad_frames(ros, frames):
    rclpy = ros({"image_topic": "/cam/image_raw/compressed", "publish_cropped": False, "publish_aligned": False})
    node = rclpy.create_node("t")
    logic = node_mod.FaceNode(node)
    try:
        image_sub, info_sub = node.subscriptions
        assert image_sub.msg_type.__name__ == "CompressedImage" and info_sub.topic == "/cam/camera_info"
        import cv2

        ok, jpeg = cv2.imencode(".jpg", frames[0])
        msg = STORE.types["sensor_msgs/msg/CompressedImage"](header=_header(0), format="jpeg", data=jpeg.reshape(-1))
        image_sub.callback(STORE.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage").tobytes())
        msg.data = np.frombuffer(b"broken", np.uint8)
        image_sub.callback(STORE.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage").tobytes())
        image_sub.callback(b"\x00\x01garbage")
        assert logic.aligner.wait_idle(30)
    finally:
        logic.close()
    assert logic.bad_frames == 2 and logic.frames_out == 1
    assert set(node.publishers) == {"/humans/faces/tracked", "/humans/faces/f0000/roi",
                                    "/humans/faces/f0000/landmarks"}, "no /tf without CameraInfo or fov"
    assert sum(level == "warning" for level, _ in node.logger.lines) == 1, "a bad frame is reported once, not per frame"


def test_node_restarts_tracking_when_stamps_go_back(ros, frames):
    rclpy = ros({"fov_deg": 60.0, "publish_markers": False})
    node = rclpy.create_node("t")
    logic = node_mod.FaceNode(node)
    try:
        sub = node.subscriptions[0]
        for i in (3, 4, 0):  # a bag replayed in a loop
            sub.callback(image_bytes(i, frames[i]))
            assert logic.aligner.wait_idle(30)
    finally:
        logic.close()
    assert logic.frames_out == 3
    assert len(node.publishers["/tf"].sent) == 3, "fov_deg gives the head pose when no CameraInfo came"
    assert "/fa3d/landmarks_3d" not in node.publishers


def test_main_runs_the_node_and_returns_0(ros, frames):
    def spin(node):
        sub = node.subscriptions[0]
        sub.callback(image_bytes(0, frames[0]))
        spin.logic_node = node

    rclpy = ros({"image_topic": "/camera/image_raw"}, spin)
    assert node_mod.main(["--ros-args", "-p", "image_topic:=/camera/image_raw"]) == 0
    assert rclpy.state["args"] == ["fa-ros-node", "--ros-args", "-p", "image_topic:=/camera/image_raw"]
    node = rclpy.state["nodes"][0]
    assert node.destroyed and not rclpy.ok()
    assert len(node.all_publishers[0].sent) == 1, "the frame was processed before the node closed"


def test_main_exit_codes(ros, monkeypatch, tmp_path, capsys):
    assert node_mod.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "image_topic" in out and "Exit codes" in out and "publish_markers" in out
    ros({"model": str(tmp_path / "missing.onnx")})
    assert node_mod.main([]) == 4
    assert "missing.onnx" in capsys.readouterr().err
    ros({"min_confidence": 7.0})
    assert node_mod.main([]) == 2
    assert "min_confidence" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "hri_msgs.msg")
    monkeypatch.setitem(sys.modules, "hri_msgs", None)
    ros()
    assert node_mod.main([]) == 2
    err = capsys.readouterr().err
    assert "hri_msgs" in err and "ros-$ROS_DISTRO-hri-msgs" in err and err.count("\n") == 1


def test_a_corrupt_detector_file_stops_the_node_at_start_with_exit_4(ros, tmp_path, capsys):
    """The detector is loaded when the node starts (as fa-run does), not in the first image callback."""
    from fa3d.runtime.detectors import DetectorError

    det = tmp_path / "cut_face_detection_yunet.onnx"
    det.write_bytes(b"\x08\x07garbage" * 100)
    rclpy = ros({"detector": str(det)})
    rclpy.init()
    with pytest.raises(DetectorError, match=det.name):
        node_mod.FaceNode(rclpy.create_node("t"))
    ros({"detector": str(det)})
    assert node_mod.main([]) == 4
    err = capsys.readouterr().err
    assert det.name in err and err.count("\n") == 1
    ros({"detector": "no_such_detector"})
    assert node_mod.main([]) == 2


def test_main_without_rclpy(monkeypatch, capsys):
    from fa3d.runtime.lazy import lazy_import

    monkeypatch.setattr(node_mod, "rclpy", lazy_import("fa3d_no_rclpy_here"))
    assert node_mod.main([]) == 2
    assert "where ROS 2 is installed" in capsys.readouterr().err
