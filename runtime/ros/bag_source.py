"""Frames from a ROS bag: :class:`BagSource`, a :class:`~fa3d.runtime.sources.FrameSource` like the others.

A bag is a rosbag2 folder (with ``metadata.yaml``; sqlite3 or MCAP storage), a bare ``.mcap`` or ``.db3``
file, or a ROS 1 ``.bag`` (rosbags' ``AnyReader``; no ROS install). Images come from one topic of
``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (encodings: :mod:`.images`); without a topic
named, the bag's only image topic. Frames carry their header (:class:`BagFrame`: exact stamp in ns and
frame_id); ``timestamp_ms`` is the header stamp in milliseconds.

Intrinsics: the first ``sensor_msgs/CameraInfo`` of the image's namespace (image_transport's rule,
:func:`camera_info_topic`), or of the topic named. A CameraInfo with a zero focal length (an uncalibrated
camera) counts as none.

Errors: a bag that cannot be opened or read (corrupt, truncated, not a bag), a missing topic, an image
encoding fa3d does not read, or a required CameraInfo that is absent raise
:class:`~fa3d.runtime.sources.SourceError`; several image topics and none chosen raise
:class:`TopicChoiceError` (a usage problem). A single message that does not decode is skipped and counted
(``stats.decode_failures``), as a bad frame of a video is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..camera import CameraIntrinsics
from ..lazy import lazy_import
from ..sources import Frame, FrameSource, SourceError
from . import hri_msgs
from .images import CAMERA_INFO, IMAGE_TYPES, BadImage, UnsupportedEncoding, to_bgr

highlevel = lazy_import("rosbags.highlevel", extra="ros")

#: image_transport's transports: a topic ending in one of these is the base topic plus a transport
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd", "ffmpeg", "h264")
#: OpenCV's distortion models that CameraInfo's plumb_bob / rational_polynomial map to (number of coefficients)
CV_DIST_LENGTHS = (4, 5, 8, 12, 14)


class TopicChoiceError(ValueError):
    """The bag has several image topics and none was chosen (``--topic``)."""


@dataclass(frozen=True)
class BagFrame(Frame):
    stamp_ns: int = 0  # the image header's stamp, nanoseconds since the epoch
    frame_id: str = ""  # the image header's frame_id
    log_time_ns: int = 0  # when the bag recorded the message


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic of an image topic (image_transport's rule): ``/cam/image_raw`` and
    ``/cam/image_raw/compressed`` -> ``/cam/camera_info``; ``image`` (relative) -> ``camera_info``."""
    parts = image_topic.rstrip("/").split("/")
    if parts[-1] in TRANSPORT_SUFFIXES and any(parts[:-1]):
        parts = parts[:-1]
    return "/".join(parts[:-1] + ["camera_info"])


def _reader_errors() -> tuple[type[BaseException], ...]:
    """What rosbags raises for an unreadable bag (and what its storage libraries raise beneath it)."""
    import sqlite3
    import struct
    import zlib

    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError

    return (AnyReaderError, Reader1Error, Reader2Error, SerdeError, sqlite3.Error, struct.error, zlib.error,
            EOFError, KeyError, IndexError, ValueError, UnicodeDecodeError, AssertionError, OSError)


def intrinsics_from_camera_info(msg) -> tuple[CameraIntrinsics | None, str | None]:
    """CameraInfo -> intrinsics (None when uncalibrated), and a note when its distortion is dropped."""
    k = list(getattr(msg, "k", None) if getattr(msg, "k", None) is not None else msg.K)
    d = [float(v) for v in (getattr(msg, "d", None) if getattr(msg, "d", None) is not None else msg.D)]
    if len(k) != 9 or not (k[0] > 0 and k[4] > 0):
        return None, None
    model, note = str(msg.distortion_model), None
    if model in ("plumb_bob", "rational_polynomial") and len(d) in CV_DIST_LENGTHS:
        dist = tuple(d)
    else:
        dist = ()
        if any(d):
            note = f"CameraInfo distortion model {model!r} is not used (OpenCV's pinhole model only)"
    return CameraIntrinsics(fx=float(k[0]), fy=float(k[4]), cx=float(k[2]), cy=float(k[5]), dist=dist), note


class BagSource(FrameSource):
    """Images of one topic of a ROS bag (see the module doc)."""

    def __init__(self, path: str | os.PathLike, topic: str | None = None, camera_info: str | None = None) -> None:
        """``camera_info``: the CameraInfo topic to take the intrinsics from, required to exist; None: the
        image topic's namespace rule, used when present."""
        super().__init__()
        self.path = Path(path)
        self.notes: list[str] = []
        self.intrinsics: CameraIntrinsics | None = None
        if not self.path.exists():
            raise SourceError(f"{self.path}: bag not found")
        self._errors = _reader_errors()
        try:
            self._reader = highlevel.AnyReader([self.path], default_typestore=hri_msgs.typestore())
            self._reader.open()
        except (*self._errors, FileNotFoundError) as e:
            raise SourceError(f"{self.path}: cannot read this bag ({_why(e)})") from None
        try:
            self.topic, self._connections = self._choose(topic)
            self.description = f"{self.path} {self.topic}"
            self._read_camera_info(camera_info)
        except BaseException:
            self.close()
            raise

    def _choose(self, topic: str | None):
        images = sorted({c.topic for c in self._reader.connections if c.msgtype in IMAGE_TYPES})
        if topic is None:
            if len(images) == 1:
                topic = images[0]
            elif not images:
                raise SourceError(f"{self.path}: no sensor_msgs/Image or CompressedImage topic in this bag "
                                  f"(its topics: {', '.join(sorted({c.topic for c in self._reader.connections}))})")
            else:
                raise TopicChoiceError(f"{self.path} has {len(images)} image topics; choose one with --topic: "
                                       f"{', '.join(images)}")
        conns = [c for c in self._reader.connections if c.topic == topic]
        if not conns:
            raise SourceError(f"{self.path}: no topic {topic!r} in this bag (image topics: "
                              f"{', '.join(images) or 'none'})")
        if any(c.msgtype not in IMAGE_TYPES for c in conns):
            raise SourceError(f"{self.path}: topic {topic!r} holds {conns[0].msgtype}, not sensor_msgs/Image "
                              "or CompressedImage")
        return topic, conns

    def _read_camera_info(self, wanted: str | None) -> None:
        topic = wanted or camera_info_topic(self.topic)
        conns = [c for c in self._reader.connections if c.topic == topic and c.msgtype == CAMERA_INFO]
        msg = None
        if conns:
            try:
                for conn, _, raw in self._reader.messages(connections=conns):
                    msg = self._reader.deserialize(raw, conn.msgtype)
                    break
            except self._errors as e:
                raise SourceError(f"{self.path}: cannot read {topic} ({_why(e)})") from None
        if msg is not None:
            self.intrinsics, note = intrinsics_from_camera_info(msg)
            if note:
                self.notes.append(note)
        if wanted is not None and self.intrinsics is None:
            what = "no sensor_msgs/CameraInfo messages" if msg is None else "a CameraInfo without calibration (K = 0)"
            raise SourceError(f"{self.path}: {wanted} has {what}; head pose in metres needs the camera's intrinsics "
                              "(record the camera_info topic, or give --intrinsics or --fov)")
        if self.intrinsics is None:
            self.notes.append(f"no calibrated CameraInfo on {topic}: no head pose in metres (no /tf)")

    @property
    def fps(self) -> float | None:
        """Images per second over the bag's time span (approximate: the span covers every topic)."""
        count = sum(c.msgcount for c in self._connections)
        span = self._reader.duration if self._reader is not None else 0
        return (count - 1) * 1e9 / span if count > 1 and span > 0 else None

    @property
    def count(self) -> int:
        return sum(c.msgcount for c in self._connections)

    def __iter__(self) -> Iterator[BagFrame]:
        index = 0
        messages = self._reader.messages(connections=self._connections)
        while self._reader is not None:
            try:
                item = next(messages, None)
            except self._errors as e:
                raise SourceError(f"{self.path}: the bag is damaged after {index} images ({_why(e)})") from None
            if item is None:
                return
            conn, log_time, raw = item
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
                image = to_bgr(msg, conn.msgtype)
            except UnsupportedEncoding as e:
                raise SourceError(f"{self.path} {self.topic}: {e}") from None
            except (BadImage, *self._errors):
                self.stats.decode_failures += 1
                index += 1
                continue
            stamp = msg.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            self.stats.frames += 1
            yield BagFrame(index, stamp_ns / 1e6, image, stamp_ns=stamp_ns, frame_id=str(msg.header.frame_id),
                           log_time_ns=int(log_time))
            index += 1

    def close(self) -> None:
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None and reader.stack is not None:
            reader.close()


def _why(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."
