"""fa-ros-node: fa3d as a ROS 2 node (Humble or newer) publishing REP-155 faces with 3D landmarks.

Subscribes to an image topic (``sensor_msgs/Image``, or ``CompressedImage`` when the topic ends in
``/compressed``) with the sensor-data QoS, and to its ``sensor_msgs/CameraInfo`` (image_transport's
namespace rule, or the ``camera_info_topic`` parameter); publishes, for every processed frame, exactly the
messages of :func:`fa3d.runtime.ros.messages.frame_messages` (the topics of docs/ros2.md, the same as
``fa-run --out-bag`` writes). Per-face publishers are created when a face appears and destroyed when its
track ends. Frames go through a :class:`~fa3d.runtime.FaceAligner` in ``RunningMode.LIVE_STREAM``: a frame
that arrives while another is processed replaces the waiting one, so a slow frame never builds a queue.
The head pose in metres (``/tf``, markers) uses the latest calibrated CameraInfo, else the ``fov_deg``
parameter when it is > 0, else it is left out.

Messages are (de)serialised by rosbags (``fa3d[ros]``) and published as serialised CDR, so the node needs
rclpy, sensor_msgs, tf2_msgs, visualization_msgs and hri_msgs (``ros-<distro>-hri-msgs``) from ROS 2, and
fa3d with its ``ros`` extra in the same Python (a venv made with ``--system-site-packages``).

Run::

    ros2 run ... or simply:  fa-ros-node --ros-args -p image_topic:=/camera/image_raw -p model:=model.plan

Parameters (``-p name:=value``): see :data:`PARAMETERS` or ``fa-ros-node --help``.

The face detector is chosen as ``fa-run`` chooses it: BlazeFace on its TensorRT engine when the model is a
``.plan`` with the detector's engine beside it, else the ``detector`` parameter's detector on the CPU; it is
loaded when the node starts, so a missing or corrupt detector file stops the node there with exit code 4.

Exit codes: 0 stopped (Ctrl-C, SIGTERM or ROS shutdown); 2 usage (a bad parameter value, rclpy or a
message package missing); 4 model, sidecar or detector file missing, invalid or incompatible.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import importlib
import sys
import threading

import numpy as np

from .. import cli_errors
from ..camera import CameraIntrinsics, solve_head_pose
from ..clihelp import HelpFormatter
from ..detector_engine import pipeline_detector
from ..detectors.registry import DETECTOR_HELP
from ..lazy import MissingDependency, lazy_import
from ..policy import DEFAULT_DET_EVERY, DEFAULT_DETECTOR, DEFAULT_MAX_FACES
from . import hri_msgs
from .bag_source import camera_info_topic, intrinsics_from_camera_info
from .images import CAMERA_INFO, COMPRESSED, IMAGE, UnsupportedEncoding, to_bgr
from .messages import DEFAULT_FRAME_ID, Header, MessageOptions, frame_messages

rclpy = lazy_import("rclpy")
rclpy_qos = lazy_import("rclpy.qos")

EXIT_OK, EXIT_USAGE, EXIT_MODEL = 0, 2, 4

#: (name, default, description): the node's ROS parameters
PARAMETERS: tuple[tuple[str, object, str], ...] = (
    ("image_topic", "/camera/image_raw", "image topic; ending in /compressed: sensor_msgs/CompressedImage"),
    ("camera_info_topic", "", "CameraInfo topic ('' = image_transport's rule: <namespace>/camera_info)"),
    ("model", "", "ONNX model or TensorRT .plan ('' = the model shipped inside fa3d)"),
    ("device", "cpu", "ONNX Runtime provider: cpu, cuda, tensorrt, auto (ignored for a .plan)"),
    ("threads", 0, "ONNX Runtime intra-op threads (0 = its default)"),
    ("detector", DEFAULT_DETECTOR, f"face detector: {DETECTOR_HELP}"),
    ("det_every", DEFAULT_DET_EVERY, "run the detector at least every N frames"),
    ("min_confidence", 0.5, "drop faces below this confidence"),
    ("max_faces", DEFAULT_MAX_FACES, "track at most this many faces"),
    ("smooth", False, "One Euro smoothing of landmarks, dense points and pose"),
    ("smooth_min_cutoff", 1.0, "One Euro min cut-off (Hz)"),
    ("smooth_beta", 0.01, "One Euro speed coefficient"),
    ("smooth_d_cutoff", 1.0, "One Euro derivative cut-off (Hz)"),
    ("fov_deg", 0.0, "horizontal field of view guess when no calibrated CameraInfo came (0 = none)"),
    ("frame_id", "", "frame_id for images whose header has none ('' = camera_optical_frame)"),
    ("crop_size", 128, "side of the cropped and aligned face images, pixels"),
    ("publish_cropped", True, "publish /humans/faces/<id>/cropped"),
    ("publish_aligned", True, "publish /humans/faces/<id>/aligned"),
    ("publish_markers", True, "publish the MarkerArray of 3D landmarks (/fa3d/landmarks_3d)"),
)


def ros_message_class(msgtype: str):
    """The ROS 2 Python class of ``pkg/msg/Name`` (``from pkg.msg import Name``); MissingDependency if the
    package is not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError) as e:
        raise MissingDependency(f"the ROS 2 message {msgtype} is not available here ({e}); install its package, "
                                f"e.g. sudo apt install ros-$ROS_DISTRO-{pkg.replace('_', '-')}") from None


def aligner_options(p: dict, result_callback):
    """FaceAlignerOptions (LIVE_STREAM) from the node's parameter values; ValueError for a bad one."""
    from ..aligner import FaceAlignerOptions
    from ..running_mode import RunningMode
    from ..smoothing import OneEuroOptions

    smoothing = OneEuroOptions(enabled=bool(p["smooth"]), min_cutoff=float(p["smooth_min_cutoff"]),
                               beta=float(p["smooth_beta"]), d_cutoff=float(p["smooth_d_cutoff"]))
    return FaceAlignerOptions(device=p["device"], num_threads=int(p["threads"]) or None,
                              mode=RunningMode.LIVE_STREAM, detector=p["detector"], det_every_n=int(p["det_every"]),
                              min_confidence=float(p["min_confidence"]), max_faces=int(p["max_faces"]),
                              smoothing=smoothing, result_callback=result_callback)


class FaceNode:
    """The node's logic on an rclpy node (``rclpy.create_node``); :meth:`close` when done."""

    def __init__(self, node, aligner_factory=None) -> None:
        """``aligner_factory(model_or_None, options, detector_or_None)``: how the aligner is made (default
        ``FaceAligner.from_artifact``; tests pass their own)."""
        from ..aligner import FaceAligner

        self.node = node
        self.params = {name: self._declare(name, default) for name, default, _ in PARAMETERS}
        p = self.params
        self.store = hri_msgs.typestore()
        self.msg_options = MessageOptions(crop_size=int(p["crop_size"]), cropped=bool(p["publish_cropped"]),
                                          aligned=bool(p["publish_aligned"]), markers=bool(p["publish_markers"]))
        self.image_topic = str(p["image_topic"])
        self.image_type = COMPRESSED if self.image_topic.rstrip("/").endswith("/compressed") else IMAGE
        self.camera_info_topic = str(p["camera_info_topic"]) or camera_info_topic(self.image_topic)
        self.default_frame_id = str(p["frame_id"]) or DEFAULT_FRAME_ID
        self.fov_deg = float(p["fov_deg"])
        self._types = {t: ros_message_class(t) for t in (IMAGE, COMPRESSED, CAMERA_INFO, hri_msgs.IDS_LIST,
                                                         hri_msgs.ROI_2D, hri_msgs.FACIAL_LANDMARKS,
                                                         "tf2_msgs/msg/TFMessage",
                                                         "visualization_msgs/msg/MarkerArray")}
        self._lock = threading.Lock()
        self._pending: collections.OrderedDict[float, Header] = collections.OrderedDict()  # by callback timestamp
        self._publishers: dict[str, object] = {}
        self._face_topics: dict[str, set[str]] = {}
        self.intrinsics: CameraIntrinsics | None = None
        self.frames_in = self.frames_out = self.bad_frames = 0
        self._warned: set[str] = set()
        options = aligner_options(p, self._on_result)
        factory = aligner_factory or FaceAligner.from_artifact
        model = str(p["model"]) or None
        with contextlib.ExitStack() as stack:  # closes what was opened if anything here fails
            # as fa-run: BlazeFace on its TensorRT engine beside a .plan model, else the named detector on the CPU
            det = pipeline_detector(model or "", str(p["detector"]), None, stack)
            self.aligner = factory(model, options, det.detector)
            stack.callback(self.aligner.close)
            self.aligner.detector  # load it now: a missing or corrupt detector fails here, not in a callback
            self._resources = stack.pop_all()  # the aligner, then the detector's session: closed by close()
        self.detector_description = det.description
        qos = rclpy_qos.qos_profile_sensor_data
        self._subs = [
            node.create_subscription(self._types[self.image_type], self.image_topic, self._on_image, qos, raw=True),
            node.create_subscription(self._types[CAMERA_INFO], self.camera_info_topic, self._on_camera_info, qos,
                                     raw=True)]
        node.get_logger().info(f"fa3d: {self.image_topic} ({self.image_type}) + {self.camera_info_topic} "
                               f"-> /humans/faces/... (detector {det.description})")

    def _declare(self, name: str, default):
        self.node.declare_parameter(name, default)
        return self.node.get_parameter(name).value

    # -------------------------------------------------------------- inputs (executor thread)
    def _on_camera_info(self, raw: bytes) -> None:
        try:
            intrinsics, note = intrinsics_from_camera_info(self.store.deserialize_cdr(raw, CAMERA_INFO))
        except Exception as e:  # noqa: BLE001 - a bad message must not stop the node
            self._warn_once("camera_info", f"cannot read a CameraInfo on {self.camera_info_topic}: {e}")
            return
        if note:
            self._warn_once("distortion", note)
        self.intrinsics = intrinsics

    def _on_image(self, raw: bytes) -> None:
        try:
            msg = self.store.deserialize_cdr(raw, self.image_type)
            image = to_bgr(msg, self.image_type)
        except UnsupportedEncoding as e:
            self._warn_once("encoding", f"{self.image_topic}: {e}; frames are skipped")
            self.bad_frames += 1
            return
        except Exception as e:  # noqa: BLE001 - one undecodable frame (BadImage, a bad CDR) is skipped, counted
            self.bad_frames += 1
            self._warn_once("bad_image", f"{self.image_topic}: a frame does not decode ({e}); skipped")
            return
        stamp = msg.header.stamp
        header = Header(int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec),
                        str(msg.header.frame_id) or self.default_frame_id)
        self.frames_in += 1
        with self._lock:  # held across the call: the worker's callback looks the frame up by its timestamp
            try:
                t_ms = self.aligner.process_async(image, header.stamp_ns / 1e6)
            except ValueError:  # the stamps went back (a bag replayed in a loop): start over
                self._pending.clear()
                self.aligner.reset()
                t_ms = self.aligner.process_async(image, header.stamp_ns / 1e6)
            self._pending[t_ms] = header

    # -------------------------------------------------------------- outputs (the aligner's worker thread)
    def _on_result(self, faces: list, frame: np.ndarray, timestamp_ms: float) -> None:
        with self._lock:
            header = None
            while self._pending:  # frames submitted before this one were dropped by the aligner
                key, hdr = self._pending.popitem(last=False)
                if key == timestamp_ms:
                    header = hdr
                    break
        if header is None:
            return
        intr = self.intrinsics
        if intr is None and self.fov_deg > 0:
            intr = CameraIntrinsics.from_fov(frame.shape[1], frame.shape[0], self.fov_deg)
        faces = [dataclasses.replace(f, head_pose_cam=_pose(f, intr)) for f in faces]
        self.publish(frame_messages(faces, header, frame, intr, self.store, self.msg_options))
        self.frames_out += 1

    def publish(self, messages) -> None:
        """Publish serialised ``messages``; create publishers for new topics, destroy those of faces gone."""
        live: set[str] = set()
        for m in messages:
            pub = self._publishers.get(m.topic)
            if pub is None:
                pub = self.node.create_publisher(self._types[m.msgtype], m.topic, 10)
                self._publishers[m.topic] = pub
            pub.publish(self.store.serialize_cdr(m.msg, m.msgtype).tobytes())
            parts = m.topic.split("/")
            if len(parts) == 5 and parts[1:3] == ["humans", "faces"]:
                live.add(parts[3])
                self._face_topics.setdefault(parts[3], set()).add(m.topic)
        for fid in [f for f in self._face_topics if f not in live]:
            for topic in self._face_topics.pop(fid):
                self.node.destroy_publisher(self._publishers.pop(topic))

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.node.get_logger().warning(text)

    def close(self) -> None:
        self._resources.close()


def _pose(face, intrinsics: CameraIntrinsics | None):
    if intrinsics is None:
        return None
    try:
        return solve_head_pose(face.landmarks, intrinsics)
    except ValueError:
        return None


def build_parser() -> argparse.ArgumentParser:
    params = "\n".join(f"  {n} (default {d!r}): {t}" for n, d, t in PARAMETERS)
    return argparse.ArgumentParser(
        prog="fa-ros-node", formatter_class=HelpFormatter,
        description=(__doc__.split("\n\n")[0] + " Everything after the options goes to ROS "
                     f"(--ros-args -p name:=value -r from:=to ...).\n\nParameters:\n{params}"),
        epilog=cli_errors.exit_codes_help(__doc__))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        _, ros_args = parser.parse_known_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    from ..backends import BackendError
    from ..detector_engine import DetectorArtifactError
    from ..detectors import DetectorError
    from ..metadata import MetadataError

    try:
        rclpy.init(args=["fa-ros-node", *ros_args])
    except MissingDependency as e:
        cli_errors.error("fa-ros-node", f"{e}; run it where ROS 2 is installed and sourced")
        return EXIT_USAGE
    node = logic = None
    try:
        node = rclpy.create_node("fa3d_faces")
        logic = FaceNode(node)
        rclpy.spin(node)
    except (MetadataError, BackendError, FileNotFoundError, DetectorError, DetectorArtifactError) as e:
        cli_errors.error("fa-ros-node", str(e))
        return EXIT_MODEL
    except (MissingDependency, ValueError) as e:  # a bad parameter value (an unknown detector name too)
        cli_errors.error("fa-ros-node", str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    finally:
        if logic is not None:
            logic.close()
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
