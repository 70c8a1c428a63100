"""Turn a still portrait into a short clip (zoom, in-plane rotation, drift) that exercises detection
and tracking.

The bundled clip ``assets/samples/astronaut.mp4`` is made from ``assets/samples/astronaut.png`` (a
public-domain NASA portrait, see ``assets/samples/NOTICE.md``) with::

    python -m tools.sample_clip OUT.mp4

It is a single photograph moved around by affine warps: it tests the plumbing (detection, tracking,
re-detection after fast scale changes), not out-of-plane head motion.
"""

from __future__ import annotations

import argparse
import os

import cv2
import numpy as np

from fa3d.runtime.default_model import sample_path
from fa3d.data.datasets.videofile import mp4v_writer

#: the bundled portrait's face centre as a fraction of the image (x, y), measured by eye
ASTRONAUT_FOCUS = (0.44, 0.25)


def clip_transforms(image_size: tuple[int, int], n_frames: int = 90, size: tuple[int, int] = (640, 480),
                    seed: int = 0, focus: tuple[float, float] | None = None) -> np.ndarray:
    """The clip's affine warps (n_frames, 2, 3), source image pixels -> frame pixels.

    ``image_size`` and ``size`` are (width, height). The path is smooth: the view zooms from the whole
    image (centred) to about 2x on ``focus`` (a point given as fractions of the image, default the
    centre) and back, rotates in plane by up to about +-25 deg and drifts; around 70 % of the clip the
    scale jumps by about 60 % within a few frames and returns, to exercise re-detection and tracking.
    ``seed`` varies the phases and amplitudes.
    """
    iw, ih = (float(v) for v in image_size)
    fw, fh = (float(v) for v in size)
    if n_frames < 1 or min(iw, ih, fw, fh) < 1:
        raise ValueError(f"need n_frames >= 1 and positive sizes, got {n_frames}, {image_size}, {size}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC11B]))
    fx, fy = (0.5, 0.5) if focus is None else (float(focus[0]), float(focus[1]))
    if not (0 <= fx <= 1 and 0 <= fy <= 1):
        raise ValueError(f"focus={focus}: expected fractions of the image in [0, 1]")
    fit = 0.95 * min(fw / iw, fh / ih)
    ph = rng.uniform(0, 2 * np.pi, 3)
    ang_amp = rng.uniform(18, 28)
    drift = np.array([rng.uniform(0.06, 0.12) * fw, rng.uniform(0.04, 0.08) * fh])
    t = np.arange(n_frames) / max(n_frames - 1, 1)
    z = 0.5 - 0.5 * np.cos(2 * np.pi * t)  # 0 -> 1 -> 0: zoomed out -> in -> out
    # a fast scale pulse: up and back down within about 6 frames, near 70 % of the clip
    centre_f = 0.7 * (n_frames - 1)
    width_f = 3.0
    k = np.arange(n_frames) - centre_f
    pulse = np.where(np.abs(k) < width_f, np.cos(np.pi * k / (2 * width_f)) ** 2, 0.0)
    scale = fit * (1 + 1.0 * z) * (1 + 0.6 * pulse)
    angle = ang_amp * np.sin(2 * np.pi * 1.5 * t + ph[0]) * np.sin(np.pi * t)  # starts upright
    src = np.stack([iw / 2 + z * (fx * iw - iw / 2), ih / 2 + z * (fy * ih - ih / 2)], axis=1)
    dst = np.stack([fw / 2 + drift[0] * np.sin(2 * np.pi * t + ph[1]) * np.sin(np.pi * t),
                    fh / 2 + drift[1] * np.sin(4 * np.pi * t + ph[2]) * np.sin(np.pi * t)], axis=1)
    m = np.empty((n_frames, 2, 3))
    for i in range(n_frames):
        r = cv2.getRotationMatrix2D((0.0, 0.0), float(angle[i]), float(scale[i]))  # rotate + scale about 0
        m[i, :, :2] = r[:, :2]
        m[i, :, 2] = dst[i] - r[:, :2] @ src[i]
    return m


def make_sample_clip(image_bgr: np.ndarray, out_path: str | os.PathLike, n_frames: int = 90,
                     size: tuple[int, int] = (640, 480), fps: float = 30, seed: int = 0, *,
                     focus: tuple[float, float] | None = None) -> np.ndarray:
    """Write an mp4 (mp4v) clip of ``image_bgr`` warped along :func:`clip_transforms`; return the warps.

    ``size`` is (width, height); areas outside the image are dark grey. The file is written atomically
    and read back with OpenCV to check the frame count. Returns the (n_frames, 2, 3) image -> frame
    affine transforms, so that any point of the still (e.g. labelled landmarks) can be followed.
    """
    img = np.asarray(image_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 BGR image, got {img.dtype} {img.shape}")
    w, h = (int(v) for v in size)
    ms = clip_transforms((img.shape[1], img.shape[0]), n_frames, (w, h), seed, focus)
    with mp4v_writer(out_path, fps, (w, h), n_frames) as write:
        for m in ms:
            write(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(40, 40, 40)))
    return ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.sample_clip",
                                description="Make the bundled sample clip from the bundled astronaut portrait.")
    p.add_argument("out", help="output .mp4 path")
    p.add_argument("--image", default=None, help="source image (default: the bundled astronaut.png)")
    p.add_argument("--frames", type=int, default=90, help="number of frames (default 90)")
    p.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    p.add_argument("--fps", type=float, default=30, help="frames per second (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the motion path (default 0)")
    a = p.parse_args(argv)
    src = a.image or str(sample_path("astronaut.png"))
    img = cv2.imread(src, cv2.IMREAD_COLOR)
    if img is None:
        p.error(f"cannot read image {src}")
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        p.error(f"--size {a.size!r}: expected WxH, e.g. 640x480")
    focus = ASTRONAUT_FOCUS if a.image is None else None
    make_sample_clip(img, a.out, a.frames, (w, h), a.fps, a.seed, focus=focus)
    print(f"wrote {a.out}: {a.frames} frames {w}x{h} at {a.fps:g} fps ({os.path.getsize(a.out)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
