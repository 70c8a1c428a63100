"""Pseudo-label a folder of images or a video with the teacher into the labelled-folder format."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fa3d.data.datasets._io import read_image
from fa3d.data.datasets.labelled import write_labelled
from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, SourceError, video_frames
from fa3d.runtime.sources import list_images as _list_images

from .mediapipe_teacher import MediaPipeTeacher, TeacherOptions

@dataclass(frozen=True)
class LabelOptions:
    teacher: TeacherOptions = TeacherOptions()
    copy_images: bool = True  # False: labels point at the source folder (folders only)
    every: int = 1  # video: label every N-th frame
    limit: int | None = None  # stop after this many images / frames
    image_format: str = ".jpg"  # video frames are written in this format


@dataclass(frozen=True)
class LabelSummary:
    labels_path: Path
    images: int
    faces: int
    failed: int
    teacher: str


def list_images(folder: Path) -> list[str]:
    names = [p.name for p in _list_images(folder)]
    if not names:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return names


def _video_frames(path: Path, every: int, image_format: str) -> Iterator[tuple[str, np.ndarray]]:
    """Named frames from :func:`fa3d.runtime.sources.video_frames`; ValueError if the video cannot be opened."""
    try:
        for frame in video_frames(path, every):
            yield f"frame_{frame.index:06d}{image_format}", frame.image
    except SourceError as e:
        raise ValueError(str(e)) from None


def label_source(src: str | os.PathLike, out: str | os.PathLike, options: LabelOptions = LabelOptions(),
                 progress: bool = True, teacher=None) -> LabelSummary:
    """Run the teacher on ``src`` (a folder of images or a video) and write ``out`` (labelled folder).

    ``out/labels.npz`` is written last and atomically: it exists only for a complete run. ``teacher``
    (a context manager with ``label(image) -> list[TeacherLabel]`` and ``version``) replaces MediaPipe,
    e.g. another teacher.
    """
    src, out = Path(src), Path(out)
    if options.every < 1:
        raise ValueError("every must be >= 1")
    if src.is_dir():
        names = list_images(src)
        if options.limit is not None:
            names = names[: options.limit]
        items = ((n, read_image(src / n)) for n in names)
        total: int | None = len(names)
        is_video = False
    elif src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
        items = _video_frames(src, options.every, options.image_format)
        total = None
        is_video = True
    elif src.is_file():
        raise ValueError(f"{src}: not a folder of images nor a video ({', '.join(VIDEO_SUFFIXES)})")
    else:
        raise FileNotFoundError(f"{src}: no such folder or video")
    copy = options.copy_images or is_video
    image_dir = "images" if copy else str(src.resolve())
    if copy:
        (out / "images").mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)

    rows: dict[str, list] = {k: [] for k in ("names", "lm68", "ypr", "dense", "confidence", "boxes")}
    failed: list[str] = []
    count = 0
    with (teacher if teacher is not None else MediaPipeTeacher(options.teacher)) as teacher:
        bar = tqdm(items, total=total, unit="img", desc="fa-label", disable=not progress)
        for name, image in bar:
            if options.limit is not None and count >= options.limit:
                break
            count += 1
            labels = teacher.label(image)
            if copy:
                dst = out / "images" / name
                if is_video:
                    with atomic_path(dst) as tmp:
                        if not cv2.imwrite(str(tmp), image):
                            raise OSError(f"{dst}: cannot write the frame")
                elif not dst.exists():
                    with atomic_path(dst) as tmp:
                        shutil.copyfile(src / name, tmp)
            if not labels:
                failed.append(name)
            for lab in labels:
                rows["names"].append(name)
                rows["lm68"].append(lab.landmarks)
                rows["ypr"].append(lab.ypr)
                rows["dense"].append(lab.dense)
                rows["confidence"].append(lab.confidence)
                rows["boxes"].append(lab.box)
            bar.set_postfix(faces=len(rows["names"]), failed=len(failed))
        version = teacher.version
    if count == 0:
        raise ValueError(f"{src}: no frame could be read")
    n = len(rows["names"])
    path = write_labelled(
        out, teacher=version, image_dir=image_dir, names=rows["names"],
        lm68=np.stack(rows["lm68"]) if n else np.zeros((0, 68, 3)),
        ypr=np.stack(rows["ypr"]) if n else np.zeros((0, 3)),
        dense=np.stack(rows["dense"]) if n else np.zeros((0, 468, 3)),
        confidence=rows["confidence"], boxes=np.stack(rows["boxes"]) if n else np.zeros((0, 4)),
        failed=failed)
    return LabelSummary(labels_path=path, images=count, faces=n, failed=len(failed), teacher=version)
