"""The one video frame reader (sources.video_frames) and its users in calibration and fa-label."""

from __future__ import annotations

import pytest

from fa3d.runtime.sources import IMAGE_SUFFIXES, SourceError, list_images, video_frames


def test_every_nth_frame_with_its_index(blob_video):
    frames = list(video_frames(blob_video, every=7))
    assert [f.index for f in frames] == [0, 7, 14, 21, 28]
    assert frames[0].image.shape == (480, 640, 3)
    with pytest.raises(SourceError, match="not found"):
        list(video_frames(blob_video.parent / "missing.avi"))
    with pytest.raises(ValueError, match="every"):
        list(video_frames(blob_video, every=0))


def test_fa_label_reads_video_through_it(blob_video):
    from fa3d.training.teacher.labelling import _video_frames

    names = [n for n, _ in _video_frames(blob_video, 10, ".png")]
    assert names == ["frame_000000.png", "frame_000010.png", "frame_000020.png"]
    with pytest.raises(ValueError, match="not found"):
        list(_video_frames(blob_video.parent / "missing.avi", 1, ".png"))


def test_calibration_reads_video_through_it(blob_video):
    from fa3d.calibration.calibset import CalibrationSetError, build_from_video
    from fa3d.runtime.preprocess import PreprocessConfig

    box = [[280.0, 180.0, 360.0, 260.0]]
    cs = build_from_video(blob_video, PreprocessConfig(input_size=32), detector=lambda img: box, every=10)
    assert list(cs.names) == [f"{blob_video.name}@{i}" for i in (0, 10, 20)]
    cs = build_from_video(blob_video, PreprocessConfig(input_size=32), detector=lambda img: box, frames=[3, 5])
    assert list(cs.names) == [f"{blob_video.name}@3", f"{blob_video.name}@5"]
    with pytest.raises(CalibrationSetError, match="not found"):
        build_from_video(blob_video.parent / "missing.avi", PreprocessConfig(input_size=32), detector=lambda i: box)


def test_one_image_list(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.PNG", "a.jpg", "c.txt", "sub/d.webp"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.jpg", "b.PNG", "d.webp"]
    assert ".ppm" in IMAGE_SUFFIXES and ".webp" in IMAGE_SUFFIXES
