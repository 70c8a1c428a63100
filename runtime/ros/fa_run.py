"""What fa-run gains with the ``fa3d[ros]`` extra: ``--source BAG``, ``--out-bag``, ``--foxglove``, ``--record``.

:mod:`fa3d.runtime.cli_run` stays the one command line: it adds these options (:func:`add_arguments`), asks
:func:`check_args` before anything runs, opens a bag through :func:`open_bag` and, when an output here is
asked for, writes every processed frame through :class:`RosOutputs`. rosbags and foxglove-sdk are imported
only then.

Headers: a bag's frames keep their header (stamp and frame_id); frames of other sources are stamped with
their timestamp (container time for files, time since opening for cameras; ns) and ``--frame-id``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..lazy import available
from ..sources import BAG_SUFFIXES, Frame, is_ros_bag
from .bag_source import TopicChoiceError
from .messages import DEFAULT_FRAME_ID, Header

__all__ = ["RosOutputs", "TopicChoiceError", "add_arguments", "check_args", "header_of", "open_bag", "wanted"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("ROS 2 bags and Foxglove (the fa3d[ros] extra; docs/ros2.md)")
    g.add_argument("--topic", help="with --source BAG: the image topic (sensor_msgs/Image or CompressedImage); "
                                   "default: the bag's only image topic")
    g.add_argument("--camera-info", metavar="TOPIC",
                   help="with --source BAG: the sensor_msgs/CameraInfo topic whose intrinsics give the head pose "
                        "in metres; it must then be in the bag (default: <image namespace>/camera_info, used when "
                        "present)")
    g.add_argument("--out-bag", metavar="OUT",
                   help="write a rosbag2 folder OUT (MCAP storage) with the REP-155 face topics, /tf and a "
                        "MarkerArray of the 3D landmarks; OUT must not exist")
    g.add_argument("--frame-id", default=DEFAULT_FRAME_ID,
                   help="frame_id of the ROS and Foxglove messages of frames without a header (camera, video, "
                        "images); bag frames keep their own")
    g.add_argument("--foxglove", action="store_true",
                   help="serve a live Foxglove view (WebSocket): the image, landmarks, head frames, 3D landmarks")
    g.add_argument("--foxglove-host", metavar="HOST",
                   help="address the Foxglove server binds (default 127.0.0.1; 0.0.0.0 on a trusted network)")
    g.add_argument("--port", type=int, help="port of the Foxglove server (default 8765; 0 = any free port)")
    g.add_argument("--record", metavar="FILE.mcap",
                   help="record the Foxglove view to this MCAP file (with or without --foxglove)")


def wanted(args) -> bool:
    """Whether a ROS or Foxglove output was asked for."""
    return bool(args.out_bag or args.foxglove or args.record)


def check_args(args) -> str | None:
    """A one-line usage problem with the options of this module, or None."""
    bag = args.source is not None and is_ros_bag(args.source)
    if (args.topic or args.camera_info) and not bag:
        return ("--topic and --camera-info read a ROS bag: give --source BAG (a rosbag2 folder, or a "
                f"{', '.join(BAG_SUFFIXES)} file)")
    if args.camera_info and (args.intrinsics or args.fov):
        return "give --camera-info or --intrinsics / --fov, not both"
    if (args.port is not None or args.foxglove_host) and not args.foxglove:
        return "--port and --foxglove-host set up the --foxglove server: add --foxglove"
    if args.port is not None and not 0 <= args.port <= 65535:
        return f"--port must be in [0, 65535], got {args.port}"
    need = (["rosbags"] if bag or args.out_bag else []) + (["foxglove"] if args.foxglove or args.record else [])
    missing = [m for m in need if not available(m)]
    if missing:
        return f"{' and '.join(missing)} not installed: pip install 'fa3d[ros]'"
    if args.out_bag:
        out = Path(args.out_bag)
        if out.suffix.lower() in BAG_SUFFIXES:
            return (f"--out-bag names the bag's folder (rosbag2 layout, MCAP inside), not a file: drop the "
                    f"{out.suffix} suffix")
        if out.exists() or out.is_symlink():
            return f"--out-bag {args.out_bag} exists; give a new name (a bag is never overwritten)"
    if args.record and Path(args.record).suffix.lower() != ".mcap":
        return f"--record must name a .mcap file, got {args.record!r}"
    return None


def _note(text: str) -> None:
    print(f"fa-run: note: {text}", file=sys.stderr)


def open_bag(args):
    """The :class:`~.bag_source.BagSource` of ``--source``; raises SourceError (exit 3) or
    :class:`TopicChoiceError` (exit 2)."""
    from .bag_source import BagSource

    source = BagSource(args.source, topic=args.topic, camera_info=args.camera_info)
    for note in source.notes:
        if not (args.intrinsics or args.fov):
            _note(note)
    return source


def header_of(frame: Frame, default_frame_id: str) -> Header:
    """The header of a frame: a bag frame's own, else its timestamp and ``default_frame_id``."""
    stamp = getattr(frame, "stamp_ns", None)
    if stamp is None:
        stamp = int(round(frame.timestamp_ms * 1e6))
    return Header(int(stamp), getattr(frame, "frame_id", "") or default_frame_id)


class RosOutputs:
    """The ``--out-bag`` writer and the ``--foxglove`` / ``--record`` view of one run (a context manager)."""

    def __init__(self, args, aligner) -> None:
        from .messages import MessageOptions

        self.args, self.aligner = args, aligner
        self.msg_options = MessageOptions(eye_span_m=aligner.options.eye_span_m)
        self.bag = self.view = None
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> "RosOutputs":
        a = self.args
        with contextlib.ExitStack() as stack:
            if a.out_bag:
                from .bag_writer import HriBagWriter

                self.bag = stack.enter_context(HriBagWriter(a.out_bag))
            if a.foxglove or a.record:
                from .foxglove_view import DEFAULT_PORT, FoxgloveView

                view = FoxgloveView(serve=a.foxglove, host=a.foxglove_host or "127.0.0.1",
                                    port=DEFAULT_PORT if a.port is None else a.port, record=a.record,
                                    eye_span_m=self.aligner.options.eye_span_m)
                try:
                    self.view = stack.enter_context(view)
                except RuntimeError as e:  # foxglove: the port is taken, the address is not ours
                    raise OSError(f"--foxglove: cannot serve on {view.host}:{view.requested_port}: {e}") from None
                if a.foxglove:
                    print(f"fa-run: Foxglove view on ws://{view.host}:{view.port} (Foxglove: Open connection)",
                          file=sys.stderr)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        done = bool(stack.__exit__(exc_type, exc, tb)) if stack is not None else False
        if exc_type is None and self.bag is not None:
            counts = self.bag.counts
            print(f"fa-run: wrote {self.args.out_bag}: {sum(counts.values())} messages on {len(counts)} topics",
                  file=sys.stderr)
        return done

    def write(self, frame: Frame, faces: list) -> None:
        """Everything asked for, for one processed frame."""
        from .messages import frame_messages

        header = header_of(frame, self.args.frame_id)
        intrinsics = self.aligner.intrinsics_for(frame.image)
        if self.bag is not None:
            log_time = getattr(frame, "log_time_ns", 0) or header.stamp_ns
            self.bag.write(frame_messages(faces, header, frame.image, intrinsics, self.bag.store, self.msg_options),
                           log_time)
        if self.view is not None:
            self.view.log(faces, header, frame.image, intrinsics)
