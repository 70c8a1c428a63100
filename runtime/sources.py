"""Frame sources: a camera index (V4L2), a video file, an image, a folder of images, RTSP, GStreamer.

:func:`open_source` picks the source from its argument and returns an iterator of :class:`Frame`.
Live sources (cameras, RTSP, GStreamer) that stop delivering frames are released and reopened with
exponential backoff (0.1 s doubling to 2 s) while the run goes on; after ``reconnect_timeout_s`` without
a frame the source raises :class:`SourceError`. Frames that fail to decode (a read that fails in the
middle of a video file, an unreadable image in a folder) are counted in ``stats.decode_failures`` and
skipped; a video file stops after 25 consecutive failures.

Timestamps: files use the container's time (or frame index / fps); live sources use the time since the
source was opened (monotonic clock), in milliseconds.
"""

from __future__ import annotations

import codecs
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: image files every reader of the package accepts (fa-run, fa-calib, fa-label, the dataset readers)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
#: video files fa-calib and fa-label recognise by name (fa-run opens anything that is not an image as a video)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
#: ROS bag files (rosbag2 MCAP / sqlite3 storage, ROS 1); a folder with a metadata.yaml is a rosbag2 bag too
BAG_SUFFIXES = (".mcap", ".db3", ".bag")
MAX_CONSECUTIVE_FAILURES = 25
#: images whose shorter side is below this are skipped (no face fits; OpenCV's resizes fail on them)
MIN_IMAGE_SIDE = 16


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`) of ``folder`` in name order; ``recursive``: of its subfolders too."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def is_ros_bag(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` names a ROS bag: a :data:`BAG_SUFFIXES` file or a rosbag2 folder (``metadata.yaml``).
    fa-run reads bags through :class:`fa3d.runtime.ros.bag_source.BagSource` (the ``fa3d[ros]`` extra)."""
    path = Path(spec)
    return path.suffix.lower() in BAG_SUFFIXES or (path / "metadata.yaml").is_file()


class SourceError(RuntimeError):
    """A source cannot be opened or has stopped for good."""


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source (skipped undecodable frames keep their index)
    timestamp_ms: float
    image: np.ndarray  # BGR uint8 (H, W, 3)
    path: str | None = None  # the image file, for image and folder sources


@dataclass
class SourceStats:
    frames: int = 0
    decode_failures: int = 0
    reconnects: int = 0
    skipped: int = 0  # decoded, but unusable (an image too small to hold a face)


def jetson_csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30,
                        flip_method: int = 0) -> str:
    """A GStreamer pipeline string for a Jetson CSI camera (nvarguscamerasrc) delivering BGR to OpenCV."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1 ! "
            f"nvvidconv flip-method={flip_method} ! video/x-raw, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1")


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class FrameSource:
    """Base class: iterate for frames; ``close()`` releases the device or file."""

    description = "source"
    live = False

    def __init__(self) -> None:
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def fps(self) -> float | None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: suffixes FFmpeg's "tty" demuxer turns into a video of rendered text: never a camera's recording
TEXT_SUFFIXES = (".txt", ".ans", ".art", ".asc", ".diz", ".ice", ".nfo", ".vt", ".json", ".jsonl", ".csv", ".md",
                 ".toml", ".yaml", ".yml", ".xml", ".html", ".py", ".log")


def _not_a_video(path: Path) -> str | None:
    """Why ``path`` is certainly no video (a text file, which FFmpeg would happily render), else None."""
    if path.suffix.lower() in TEXT_SUFFIXES:
        return f"a {path.suffix} file is not a video"
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "the file is empty"
    if b"\0" not in head and not head.startswith(b"YUV4MPEG2"):  # every binary container has NUL bytes
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last character is fine
        except UnicodeDecodeError:
            return None
        return "the file holds text, not a video"
    return None


class VideoFileSource(FrameSource):
    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = str(self.path)
        if not self.path.is_file():
            raise SourceError(f"{self.path}: video file not found")
        why = _not_a_video(self.path)
        if why:
            raise SourceError(f"{self.path}: {why}; give a video (.mp4, .avi, ...), an image, a folder of "
                              "images, a camera index or a stream URL")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(f"{self.path}: OpenCV cannot open this video (unknown or corrupt container)")
        self._count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    @property
    def fps(self) -> float | None:
        f = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0
        return float(f) if f and f > 0 else None

    def __iter__(self) -> Iterator[Frame]:
        index, failures = 0, 0
        fps = self.fps or 30.0
        while self._cap is not None:
            ok, image = self._cap.read()
            if ok and image is not None:
                failures = 0
                self.stats.frames += 1
                yield Frame(index, index * 1000.0 / fps, _to_bgr(image))
                index += 1
                continue
            # a failed read: the end, or a frame that did not decode
            if self._count and index < self._count - 1 and failures < MAX_CONSECUTIVE_FAILURES:
                failures += 1
                self.stats.decode_failures += 1
                index += 1
                continue
            break

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageSource(FrameSource):
    """One image, or every image of a folder in name order."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.description = str(self.path)
        if self.path.is_dir():
            self._files = list_images(self.path)
            if not self._files:
                raise SourceError(f"{self.path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        elif self.path.is_file():
            self._files = [self.path]
        else:
            raise SourceError(f"{self.path}: image or folder not found")
        self._fps = fps

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def fps(self) -> float | None:
        return self._fps

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self._files):
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if image is None:
                self.stats.decode_failures += 1
                if len(self._files) == 1:
                    raise SourceError(f"{p}: OpenCV cannot decode this image")
                continue
            if min(image.shape[:2]) < MIN_IMAGE_SIDE:
                self.stats.skipped += 1
                if len(self._files) == 1:
                    raise SourceError(f"{p}: the image is {image.shape[1]}x{image.shape[0]} px, too small to "
                                      f"hold a face (both sides must be >= {MIN_IMAGE_SIDE} px)")
                continue
            self.stats.frames += 1
            yield Frame(i, i * 1000.0 / self._fps, _to_bgr(image), path=str(p))


Opener = Callable[[], "cv2.VideoCapture"]


class LiveSource(FrameSource):
    """A camera, RTSP stream or GStreamer pipeline, reopened with backoff when it stops delivering."""

    live = True

    def __init__(self, opener: Opener, description: str, *, reconnect_timeout_s: float = 30.0,
                 backoff_s: tuple[float, float] = (0.1, 2.0), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._opener, self.description = opener, description
        self.reconnect_timeout_s, self._backoff = reconnect_timeout_s, backoff_s
        self._sleep, self._clock = sleep, clock
        self._cap = opener()
        if self._cap is None or not self._cap.isOpened():
            raise SourceError(f"{description}: cannot open (no such device, busy, or unreachable); "
                              "check the index/URL/pipeline and permissions (e.g. the 'video' group)")
        self._t0 = clock()

    @property
    def fps(self) -> float | None:
        f = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0
        return float(f) if f and 0 < f < 1000 else None

    def _reopen(self) -> None:
        lost_at = self._clock()
        delay = self._backoff[0]
        while True:
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            if self._clock() - lost_at > self.reconnect_timeout_s:
                raise SourceError(f"{self.description}: lost, and not back after {self.reconnect_timeout_s:.0f} s")
            self._sleep(delay)
            delay = min(delay * 2, self._backoff[1])
            cap = self._opener()
            if cap is not None and cap.isOpened():
                self._cap = cap
                self.stats.reconnects += 1
                return
            if cap is not None:
                cap.release()

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            if self._cap is None:
                return
            ok, image = self._cap.read()
            if not ok or image is None:
                self._reopen()
                continue
            self.stats.frames += 1
            yield Frame(index, (self._clock() - self._t0) * 1000.0, _to_bgr(image))
            index += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def gstreamer_support() -> bool:
    """Whether this OpenCV was built with GStreamer (its build information's "GStreamer: YES" line)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


def no_gstreamer_message() -> str:
    """What fa-run prints when a GStreamer pipeline (a Jetson CSI camera) meets an OpenCV without GStreamer."""
    return (f"this OpenCV {cv2.__version__} ({Path(cv2.__file__).parent}) was built without GStreamer, which CSI "
            "cameras (nvarguscamerasrc) and GStreamer pipelines need; pip's opencv-python has none. On a Jetson use "
            "JetPack's OpenCV: `sudo apt install python3-opencv`, a venv made with --system-site-packages, and "
            "`pip uninstall opencv-python` in it (see the README, 'Deploying on a Jetson'); or use a USB camera "
            "(--camera 0)")


def _camera_opener(index: int) -> Opener:
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return lambda: cv2.VideoCapture(index, api)


def open_source(spec: str | int, **live_options) -> FrameSource:
    """``0`` / ``"0"``: camera index (V4L2 on Linux); ``/dev/video0``, ``/dev/v4l/by-id/...``: a V4L2 device
    path; ``rtsp://``, ``http(s)://``: a stream;
    an existing folder or image file: images; any other existing file: a video file (whatever its name
    holds: ``clip ! take 2.mp4`` is a file); a string containing `` ! `` or starting with ``gst:``: a
    GStreamer pipeline (``appsink`` at the end); anything else: a video file (not found). A ROS bag
    (:func:`is_ros_bag`) is refused with SourceError: :class:`fa3d.runtime.ros.bag_source.BagSource` reads it."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        return LiveSource(_camera_opener(index), f"camera {index}", **live_options)
    spec = str(spec)
    if spec.startswith(("/dev/video", "/dev/v4l/")):
        return LiveSource(lambda: cv2.VideoCapture(spec, cv2.CAP_V4L2), f"camera {spec}", **live_options)
    if spec.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return LiveSource(lambda: cv2.VideoCapture(spec, cv2.CAP_FFMPEG), spec, **live_options)
    path = Path(spec)
    if is_ros_bag(path):
        raise SourceError(f"{spec}: a ROS bag; `fa-run --source BAG` reads it (fa3d.runtime.ros.bag_source, "
                          "the fa3d[ros] extra)")
    if os.path.lexists(spec):  # an existing path is a file or a folder, whatever characters its name holds
        return ImageSource(path) if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES else VideoFileSource(path)
    if spec.startswith("gst:") or " ! " in spec:
        pipeline = spec[4:] if spec.startswith("gst:") else spec
        if not gstreamer_support():
            raise SourceError(f"GStreamer pipeline {pipeline!r}: {no_gstreamer_message()}")
        return LiveSource(lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER), f"GStreamer pipeline {pipeline!r}",
                          **live_options)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoFileSource(path)


def video_frames(path: str | os.PathLike, every: int = 1) -> Iterator[Frame]:
    """Every ``every``-th frame of a video file (by frame index), through :class:`VideoFileSource`: the one
    video frame reader of the package. Raises :class:`SourceError` if the file is missing or cannot be opened."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    with VideoFileSource(path) as src:
        for frame in src:
            if frame.index % every == 0:
                yield frame
