"""fa-run's outputs: JSON lines written as frames are processed, and annotated video, image or image folder.

JSON lines (:class:`JsonLinesWriter`) go straight to the named file, one ``os.write`` of a whole line per
record, so ``tail -f`` follows a camera run and a crash (or kill) never leaves a half-written line: a record
is either entirely in the file or not at all (a short write, e.g. a full disk, is cut back to the last whole
line before the error is raised). On an error the caller discards the file; on Ctrl-C it keeps the lines.
A device or FIFO (``/dev/null``, a pipe to another program) is written in place and never truncated or
removed.

Annotated output (:func:`open_annotated`), by the ``--output`` name: ``.mp4``/``.avi``/``.mkv`` a video
(written under a temporary name, renamed at the end); ``.png``/``.jpg``/``.jpeg``/``.bmp`` one image (a
single-image source only); a name without a suffix, or an existing folder, a folder with one annotated
PNG per frame, each written atomically: an image keeps its whole file name, extension included, with
``.png`` added (:func:`annotated_name`: ``face.jpg`` -> ``face.jpg.png``, ``face.png`` -> ``face.png.png``,
so two images with the same stem never collide), a video frame becomes ``frame_000000.png``, ...
Frames of another size than the first are scaled to fit the video and padded, never stretched.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path, atomic_write_bytes

#: the version of fa-run's JSON-lines records (1: before ``schema_version``, ``width``/``height``, ``file``)
RECORD_SCHEMA_VERSION = 2
VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
IMAGE_OUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def output_kind(path: str) -> str:
    """``video``, ``image`` or ``folder`` for an ``--output`` name; ValueError for anything else."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in VIDEO_FOURCC:
        return "video"  # an existing folder of that name is refused by the output check, before any work
    if suffix in IMAGE_OUT_SUFFIXES:
        return "image"
    if p.is_dir() or (suffix == "" and not p.exists()):
        return "folder"
    raise ValueError(f"--output must be a video ({', '.join(VIDEO_FOURCC)}), an image "
                     f"({', '.join(IMAGE_OUT_SUFFIXES)}) or a folder, got {path!r}")


def fit_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (w, h) with its aspect ratio kept, centred on black."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    k = min(w / iw, h / ih)
    nw, nh = max(1, int(round(iw * k))), max(1, int(round(ih * k)))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    return out


def annotated_name(frame_path: str | os.PathLike | None, index: int) -> str:
    """The file name of a frame's annotation in an output folder: the image's whole name plus ``.png``
    (``face.jpg`` -> ``face.jpg.png``), or ``frame_000042.png`` for a video frame."""
    return f"{Path(frame_path).name}.png" if frame_path else f"frame_{index:06d}.png"


class JsonLinesWriter:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        #: a regular file (truncated back on a short write, removed by discard); else a device or FIFO,
        #: written in place and never truncated or removed
        self.regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._size = 0

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as e:
            if self.regular:
                with contextlib.suppress(OSError):  # never a half line; the write's own error is the one to report
                    os.ftruncate(self._fd, self._size)
            raise OSError(e.errno, e.strerror, str(self.path)) from None
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close, and remove the file if it is a regular file (a device or FIFO is never removed)."""
        self.close()
        if self.regular:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class _VideoOut:
    def __init__(self, stack: contextlib.ExitStack, path: str, fps: float) -> None:
        self.path, self.fps = path, fps
        self.tmp = stack.enter_context(atomic_path(path))
        self.writer, self.size = None, None
        stack.callback(self.close)  # before the atomic rename (LIFO)

    def write(self, frame, canvas: np.ndarray) -> None:
        if self.writer is None:
            h, w = canvas.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC[Path(self.path).suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write this video")
            self.size = (w, h)
        self.writer.write(fit_into(canvas, self.size))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def _encode(path: Path, canvas: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(path.suffix.lower() or ".png", canvas)
    if not ok:
        raise OSError(f"{path}: OpenCV cannot encode this image")
    return buf.tobytes()


class _ImageOut:
    def __init__(self, path: str) -> None:
        self.path, self.written = Path(path), False

    def write(self, frame, canvas: np.ndarray) -> None:
        if self.written:
            raise OSError(f"{self.path}: an image output takes one frame; give a folder for several")
        atomic_write_bytes(self.path, _encode(self.path, canvas))
        self.written = True


class _FolderOut:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, frame, canvas: np.ndarray) -> None:
        target = self.path / annotated_name(getattr(frame, "path", None), frame.index)
        atomic_write_bytes(target, _encode(target, canvas))


def open_annotated(stack: contextlib.ExitStack, path: str, fps: float):
    """The writer for an ``--output`` name (see the module doc): ``.write(frame, canvas)``."""
    kind = output_kind(path)
    if kind == "video":
        return _VideoOut(stack, path, fps)
    return _ImageOut(path) if kind == "image" else _FolderOut(path)
