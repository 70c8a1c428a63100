"""Test helpers for fa3d.runtime.ros: bags of real frames written with rosbags' Writer (as a robot's
recording would be), and an independent reader of fa3d's output bags (mcap + mcap-ros2-support)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

#: the stamp of the first frame of the test bags (2023-11-14, a plausible robot clock), ns
T0_NS = 1_700_000_000_123_456_789
FRAME_ID = "head_camera_optical_frame"
#: fx, fy, cx, cy of the test camera (640x480)
K = (520.0, 520.0, 319.5, 239.5)


def sample_frames(n: int) -> list[np.ndarray]:
    """The first ``n`` frames (BGR) of the bundled sample clip (real faces), through the package's reader."""
    from fa3d.runtime.default_model import sample_clip_path
    from fa3d.runtime.sources import video_frames

    out = []
    for frame in video_frames(sample_clip_path()):
        out.append(frame.image)
        if len(out) == n:
            break
    return out


def stamp_of(i: int, period_ns: int = 33_333_333) -> int:
    return T0_NS + i * period_ns


def write_image_bag(path: Path, frames: list[np.ndarray], *, topic: str = "/camera/image_raw",
                    compressed: bool = False, encoding: str = "bgr8", camera_info: str | None = "/camera/camera_info",
                    storage: str = "mcap", extra_topics: tuple[str, ...] = (), k: tuple = K) -> Path:
    """A rosbag2 bag of ``frames`` on ``topic`` (Image in ``encoding``, or CompressedImage JPEG), headers stamped
    :func:`stamp_of`, plus one CameraInfo first (unless None) and image topics ``extra_topics`` (one frame)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3

    def header(i):
        s = stamp_of(i)
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=s // 10**9, nanosec=s % 10**9),
                                        frame_id=FRAME_ID)

    def image_msg(i, img):
        if compressed:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            return "sensor_msgs/msg/CompressedImage", t["sensor_msgs/msg/CompressedImage"](
                header=header(i), format="jpeg", data=buf.reshape(-1))
        data = {"bgr8": img, "rgb8": img[..., ::-1], "mono8": cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None],
                "rgba8": cv2.cvtColor(img, cv2.COLOR_BGR2RGBA)}.get(encoding, img)
        data = np.ascontiguousarray(data)
        h, w = data.shape[:2]
        return "sensor_msgs/msg/Image", t["sensor_msgs/msg/Image"](
            header=header(i), height=h, width=w, encoding=encoding, is_bigendian=0, step=w * data.shape[2],
            data=data.reshape(-1))

    with Writer(path, version=9, storage_plugin=plugin) as w:
        if camera_info is not None:
            fx, fy, cx, cy = k
            h, wd = frames[0].shape[:2]
            info = t["sensor_msgs/msg/CameraInfo"](
                header=header(0), height=h, width=wd, distortion_model="plumb_bob", d=np.zeros(5),
                k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1.0]), r=np.eye(3).reshape(-1),
                p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1.0, 0]), binning_x=0, binning_y=0,
                roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False))
            conn = w.add_connection(camera_info, "sensor_msgs/msg/CameraInfo", typestore=store)
            w.write(conn, stamp_of(0) - 1000, store.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
        conns = {}
        for i, img in enumerate(frames):
            msgtype, msg = image_msg(i, img)
            if msgtype not in conns:
                conns[msgtype] = w.add_connection(topic, msgtype, typestore=store)
            w.write(conns[msgtype], stamp_of(i) + 5_000_000, store.serialize_cdr(msg, msgtype))
        for extra in extra_topics:
            msgtype, msg = image_msg(0, frames[0])
            w.write(w.add_connection(extra, msgtype, typestore=store), stamp_of(0), store.serialize_cdr(msg, msgtype))
    return path


def read_bag(path: Path) -> list[tuple[str, int, object]]:
    """Every message of an fa3d output bag as (topic, log_time, decoded message), read by the mcap libraries
    (not rosbags): the bag's own schemas must be enough."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = sorted(Path(path).glob("*.mcap"))
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [(ch.topic, m.log_time, dec) for _, ch, m, dec in reader.iter_decoded_messages()]


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec
