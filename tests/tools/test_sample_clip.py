"""The bundled sample portrait and clip, and the clip maker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fa3d.runtime.default_model import sample_path
from tools.sample_clip import ASTRONAUT_FOCUS, clip_transforms, make_sample_clip


def _read_all(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def test_bundled_portrait_and_notice():
    img = cv2.imread(str(sample_path("astronaut.png")), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (512, 512, 3)
    notice = (sample_path("astronaut.png").parent / "NOTICE.md").read_text()
    assert "public domain" in notice
    with pytest.raises(ValueError, match="unknown sample"):
        sample_path("nope.mp4")


def test_shipped_clip_opens_and_matches_its_recipe():
    path = sample_path("astronaut.mp4")
    assert path.stat().st_size <= 2 * 1024 * 1024
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30, abs=0.5)
    cap.release()
    frames = _read_all(path)
    assert len(frames) == 90
    assert frames[0].shape == (480, 640, 3)
    # the shipped file is what make_sample_clip makes from the bundled portrait (up to codec loss)
    img = cv2.imread(str(sample_path("astronaut.png")), cv2.IMREAD_COLOR)
    ms = clip_transforms((512, 512), 90, (640, 480), 0, ASTRONAUT_FOCUS)
    for i in (0, 45, 62):
        ref = cv2.warpAffine(img, ms[i], (640, 480), borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40))
        err = np.abs(frames[i].astype(np.float64) - ref).mean()
        assert err < 8, (i, err)


def test_clip_path_keeps_the_face_in_frame_and_changes_scale_fast():
    ms = clip_transforms((512, 512), 90, (640, 480), 0, ASTRONAUT_FOCUS)
    face = np.array([ASTRONAUT_FOCUS[0] * 512, ASTRONAUT_FOCUS[1] * 512, 1.0])
    pts = ms @ face
    assert (pts[:, 0] > 60).all() and (pts[:, 0] < 580).all() and (pts[:, 1] > 40).all() and (pts[:, 1] < 440).all()
    scale = np.sqrt(np.abs(np.linalg.det(ms[:, :, :2])))
    assert scale.max() / scale.min() > 2.0  # zooms
    assert (scale[1:] / scale[:-1]).max() > 1.15  # a fast scale change between two frames
    angle = np.degrees(np.arctan2(ms[:, 1, 0], ms[:, 0, 0]))
    assert np.ptp(angle) > 20  # turns in plane
    assert np.abs(np.diff(angle)).max() < 5  # smoothly


def test_make_sample_clip_small(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    out = tmp_path / "sub" / "clip.mp4"
    ms = make_sample_clip(img, out, n_frames=7, size=(96, 64), fps=10, seed=3)
    assert ms.shape == (7, 2, 3)
    frames = _read_all(out)
    assert len(frames) == 7 and frames[0].shape == (64, 96, 3)
    assert not list(out.parent.glob(".*partial*"))
    with pytest.raises(ValueError, match="uint8"):
        make_sample_clip(img.astype(np.float32), tmp_path / "bad.mp4", n_frames=2)
    assert not (tmp_path / "bad.mp4").exists()
