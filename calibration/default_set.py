"""The default calibration and validation sets, generated deterministically from redistributable assets.

No binary ships for them: they are rebuilt (about 4 s + 6 s on our CPU) whenever ``fa-export --int8`` runs
without ``--calib``, from

* the package's public-domain sample photograph (``fa3d/runtime/assets/samples/astronaut.png``: the NASA
  portrait of Eileen Collins that scikit-image ships), face found by the runtime's detector, augmented:
  crop scale and shift jitter, in-plane rotation (+-30 deg), horizontal flips, brightness, contrast,
  gamma and blur;
* synthetic faces (:mod:`fa3d.runtime.datasets.synthetic`) over the full yaw range, with their exact boxes.

The validation set uses other augmentation draws and other synthetic seeds than the calibration set
(held-out crops); when the sample clip ``astronaut.mp4`` is present, some of its frames are added.

How representative this is: weakly. One real identity under one lighting, plus cartoon-like synthetic
faces. It exercises the value ranges of a face model well enough to produce a working INT8 model, but
activation ranges on your camera's faces may differ: calibrate on your own frames
(``fa-calib`` then ``fa-export --int8 --calib calib.npz``), and validate on labelled data (``--val``).
The research-only aflw19k data are never used here.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fa3d.runtime.preprocess import PreprocessConfig, jitter_box, prepare

from .calibset import CalibrationSet, Detector, build_from_video, runtime_detector

SAMPLE_IMAGE = "astronaut.png"
SAMPLE_VIDEO = "astronaut.mp4"


def sample_dir() -> Path:
    """The package's bundled samples folder (the asset layout is known to fa3d.runtime.default_model only)."""
    from fa3d.runtime.default_model import asset_path
    return asset_path("samples")


def _augmented_real(image: np.ndarray, box: np.ndarray, n: int, config: PreprocessConfig,
                    rng: np.random.Generator, name: str) -> tuple[list[np.ndarray], list[str]]:
    out, names = [], []
    h, w = image.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    for i in range(n):
        img, b = image, box.copy()
        if rng.random() < 0.5:
            img = img[:, ::-1]
            b = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
        s = rng.uniform(0.88, 1.15)
        jittered = jitter_box((b[:2] + b[2:]) / 2, np.array([bw, bh]), s, rng.uniform(-0.08, 0.08, 2))
        angle = rng.uniform(-30, 30)
        # photometric: contrast, brightness, gamma, sometimes blur
        x = img.astype(np.float32) * rng.uniform(0.6, 1.35) + rng.uniform(-40, 40)
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** rng.uniform(0.7, 1.4)
        x = np.clip(x, 0, 255).astype(np.uint8)
        if rng.random() < 0.25:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.6, 2.0))
        out.append(prepare(np.ascontiguousarray(x), jittered[None], config, angle_deg=angle).inputs[0])
        names.append(f"{name}:aug{i}")
    return out, names


def _synthetic(n: int, seed: int, config: PreprocessConfig) -> tuple[list[np.ndarray], list[str], np.ndarray]:
    from fa3d.runtime.datasets.synthetic import synth_faces
    faces = synth_faces(n, seed, size=max(2 * config.input_size, 192))
    inputs = [prepare(f.image, f.box[None], config).inputs[0] for f in faces]
    return inputs, [f"synthetic:{seed}:{i}" for i in range(n)], np.stack([f.ypr for f in faces])


def _sample_face(image_path: Path, detector: Detector | None) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"{image_path}: the bundled sample image is missing or unreadable; reinstall "
                                "fa3d, or give your own calibration set with --calib")
    boxes = (detector or runtime_detector())(image)
    if len(boxes) == 0:
        raise RuntimeError(f"{image_path}: the detector found no face in the bundled sample")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return image, np.asarray(boxes[int(np.argmax(area))], dtype=np.float64)


def _build(config: PreprocessConfig, n_real: int, n_synth: int, seed: int, role: str,
           image_path: Path | None, detector: Detector | None, video: Path | None) -> CalibrationSet:
    image_path = image_path or sample_dir() / SAMPLE_IMAGE
    image, box = _sample_face(image_path, detector)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCA1B]))
    inputs, names = _augmented_real(image, box, n_real, config, rng, image_path.name)
    s_in, s_names, _ = _synthetic(n_synth, seed + 7919, config)
    parts = [f"{n_real} augmented crops of {image_path.name} (public domain)", f"{n_synth} synthetic faces"]
    inputs += s_in
    names += s_names
    if video is not None and video.is_file():
        v = build_from_video(video, config, detector=detector or runtime_detector(), every=7, max_faces=16)
        inputs += list(v.inputs)
        names += list(v.names)
        parts.append(f"{len(v)} frames of {video.name}")
    return CalibrationSet(inputs=np.stack(inputs).astype(np.float32), names=tuple(names), preprocess=config,
                          source=f"fa3d default {role} set (seed {seed}): " + ", ".join(parts))


def default_calibration_set(config: PreprocessConfig, *, count: int = 96, seed: int = 0,
                            image_path: str | os.PathLike | None = None,
                            detector: Detector | None = None) -> CalibrationSet:
    """About two thirds augmented crops of the bundled photograph, one third synthetic faces."""
    n_synth = count // 3
    return _build(config, count - n_synth, n_synth, seed, "calibration",
                  Path(image_path) if image_path else None, detector, None)


def default_validation_set(config: PreprocessConfig, *, count: int = 48, seed: int = 1,
                           image_path: str | os.PathLike | None = None, detector: Detector | None = None,
                           video: str | os.PathLike | None = "bundled") -> CalibrationSet:
    """Held-out crops: other augmentation draws and synthetic seeds, plus sample-clip frames if present."""
    if seed == 0:
        raise ValueError("seed 0 is the calibration set's; the validation set must use another seed")
    vid = (sample_dir() / SAMPLE_VIDEO) if video == "bundled" else (Path(video) if video else None)
    n_synth = count // 3
    return _build(config, count - n_synth, n_synth, seed, "validation",
                  Path(image_path) if image_path else None, detector, vid)
