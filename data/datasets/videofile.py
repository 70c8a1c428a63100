"""Writing a verified video file atomically (used by the synthetic clips and the bundled sample clip)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from fa3d.runtime.atomic import atomic_path


def count_frames(path: str | os.PathLike) -> int:
    """Frames OpenCV decodes from a video file (reads it through; no reliance on the container's count)."""
    cap = cv2.VideoCapture(os.fspath(path))
    try:
        count = 0
        while cap.read()[0]:
            count += 1
    finally:
        cap.release()
    return count


@contextlib.contextmanager
def mp4v_writer(path: str | os.PathLike, fps: float, size: tuple[int, int],
                n_frames: int) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``write(frame_bgr)``; on exit the file holds exactly ``n_frames`` decodable frames or is absent."""
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(os.fspath(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), tuple(size))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write mp4v video to {path}; check the OpenCV build's video support")
        try:
            yield writer.write
        finally:
            writer.release()
        count = count_frames(tmp)
        if count != n_frames:
            raise RuntimeError(f"{path}: OpenCV read back {count} frames, wrote {n_frames}; "
                               "the OpenCV build's mp4v codec is not working")
