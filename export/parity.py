"""Numerical parity of exported models: PyTorch vs ONNX Runtime, FP32 vs FP16 ONNX, ONNX vs TensorRT.

Inputs are real face crops made by the one preprocessing implementation (:mod:`fa3d.runtime.preprocess`):
the bundled public-domain sample portrait and any images the user adds, each cut several times (scales,
in-plane rotations, shifts) so that one face gives a small batch with realistic image statistics.
Synthetic faces (:mod:`fa3d.data.datasets.synthetic`) are the fallback for tests only.

The comparison runs through Polygraphy (:mod:`fa3d.export.compare`): the two models as runners, at batch 1
and at the whole set's batch (the dynamic batch axis), compared on the maximum absolute difference per output
against a stated tolerance per output (:data:`FP32_TOLERANCE`, :data:`FP16_TOLERANCE`). Landmark and dense
tolerances are in crop pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fa3d.runtime.backends.onnxrt import cpu_session
from fa3d.runtime.metadata import INPUT_NAME, OUTPUT_NAMES
from fa3d.runtime.policy import DEFAULT_DETECTOR
from fa3d.runtime.preprocess import PreprocessConfig, jitter_box, prepare

from .compare import Comparison, ComparisonFailed, batches_of, callable_runner, compare_runners, onnxrt_runner

if TYPE_CHECKING:
    import torch

ParityError = ComparisonFailed  # a candidate model's outputs differ from the reference beyond the tolerance


@dataclass(frozen=True)
class Tolerance:
    """Largest accepted absolute difference per output (landmarks and dense in crop pixels)."""

    landmarks: float
    rotation: float
    dense: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


#: PyTorch FP32 vs ONNX Runtime FP32: only operator-order rounding differs (measured ~1e-5 px on the
#: fixture and the edge model); 0.01 px is 1/100 of a pixel of the crop.
FP32_TOLERANCE = Tolerance(landmarks=1e-2, rotation=1e-3, dense=1e-2, confidence=1e-3)
#: FP32 vs FP16 ONNX (ONNX Runtime CPU): half precision has an 11-bit mantissa; 0.5 crop pixel is about a
#: quarter of a pixel of a typical 250-px face at 128 input, well under the model's own error.
FP16_TOLERANCE = Tolerance(landmarks=0.5, rotation=0.02, dense=0.5, confidence=0.02)
#: TensorRT FP32 engine vs ONNX Runtime FP32: TensorRT may use TF32 tensor cores (Ampere and newer), a 10-bit
#: mantissa for matrix products; 0.05 crop pixel. Not measured here (no GPU): a stated bound, to be confirmed.
TRT_FP32_TOLERANCE = Tolerance(landmarks=0.05, rotation=5e-3, dense=0.05, confidence=5e-3)
#: TensorRT INT8 engine vs ONNX Runtime running the same Q/DQ model: the same quantised weights and scales,
#: so what differs is the float arithmetic around them (TensorRT may run the unquantised layers in FP16 before
#: 10.12) and the rounding of activations sitting on a quantisation boundary: the FP16 bound, far below the INT8
#: gate's 1 % NME deviation. Not measured here (no GPU): a stated bound, to be confirmed by fa-verify's report.
INT8_SAME_MODEL_TOLERANCE = FP16_TOLERANCE


@dataclass(frozen=True)
class FaceCrops:
    inputs: np.ndarray  # (B, 3, S, S) float32
    source: str  # where the crops came from, for the report


# ---------------------------------------------------------------- face crops

#: crop variations applied to every face: (scale of the box, in-plane angle deg, shift as a box fraction)
_JITTER: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.9, 10.0, 0.03), (1.1, -15.0, -0.03), (1.0, 30.0, 0.05))


def detect_face_box(image: np.ndarray) -> np.ndarray:
    """The largest face's tight box found by the runtime's default detector, else the central square.

    Only to place parity crops on a face; alignment quality does not matter here.
    """
    from fa3d.runtime.detectors import make_detector

    try:
        found = make_detector("haar").detect(image)
    except (FileNotFoundError, RuntimeError):  # no cascade in this OpenCV build
        found = None
    if found is not None and len(found.boxes):
        return np.asarray(found.boxes[0], dtype=np.float64)
    h, w = image.shape[:2]
    side = 0.5 * min(h, w)
    cx, cy = w / 2, h / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def crops_from_image(image: np.ndarray, face_box: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Several model inputs (len(_JITTER), 3, S, S) of one face, through the runtime's preprocessing."""
    box = np.asarray(face_box, dtype=np.float64).reshape(4)
    centre, size = (box[:2] + box[2:]) / 2, box[2:] - box[:2]
    boxes = [jitter_box(centre, size, scale, shift) for scale, _, shift in _JITTER]
    angles = np.array([angle for _, angle, _ in _JITTER])
    return prepare(image, np.stack(boxes), config, angle_deg=angles).inputs


def image_crops(images: Sequence[Path], config: PreprocessConfig) -> FaceCrops:
    """Crops of the largest face of each image (:func:`fa3d.runtime.images.read_image`, BGR)."""
    from fa3d.runtime.images import ImageError, read_image

    batches, names = [], []
    for p in images:
        try:
            img = read_image(p)
        except (ImageError, FileNotFoundError) as e:
            raise FileNotFoundError(f"{p}: not a readable image ({e}); give a JPEG or PNG with a face") from None
        batches.append(crops_from_image(img, detect_face_box(img), config))
        names.append(Path(p).name)
    if not batches:
        raise ValueError("no images given for parity crops")
    return FaceCrops(inputs=np.concatenate(batches).astype(np.float32), source="images: " + ", ".join(names))


def synthetic_crops(config: PreprocessConfig, n_faces: int = 2, seed: int = 0) -> FaceCrops:
    """Crops of synthetic faces (:mod:`fa3d.data.datasets.synthetic`): for tests where no real image is available."""
    from fa3d.data.datasets import synthetic

    batches = [crops_from_image(face.image, face.box, config) for face in synthetic.synth_faces(n_faces, seed)]
    return FaceCrops(inputs=np.concatenate(batches).astype(np.float32),
                     source=f"{n_faces} synthetic faces (seed {seed}), not real data")


def clip_crops(config: PreprocessConfig, every: int = 1, detector: str = DEFAULT_DETECTOR) -> FaceCrops:
    """The face of every ``every``-th frame of the bundled sample clip (the detector's best box per frame), cut
    by the runtime's preprocessing: fa-verify's faces.

    The clip is one portrait moved by affine warps: one face per frame. The shipped BlazeFace also reports a
    weaker second box on 47 of its 90 frames (scores 0.55 to 0.69, measured), which is not the face: the best
    box per frame is the face."""
    from fa3d.runtime.default_model import sample_clip_path
    from fa3d.runtime.detectors import make_detector
    from fa3d.runtime.sources import video_frames

    det = make_detector(detector)
    batches, frames = [], 0
    for frame in video_frames(sample_clip_path(), every=every):
        frames += 1
        found = det.detect(frame.image)
        if len(found.boxes):
            best = np.asarray(found.boxes)[int(np.argmax(found.scores))][None]
            batches.append(prepare(frame.image, best, config).inputs)
    if not batches:
        raise FileNotFoundError(f"{detector} found no face in the {frames} frames read of {sample_clip_path()}")
    inputs = np.concatenate(batches).astype(np.float32)
    return FaceCrops(inputs=inputs, source=f"the face of {len(inputs)} of {frames} frames of {sample_clip_path().name}"
                                           + (f" (every {every}th frame)" if every > 1 else "") + f", {detector}")


def parity_crops(config: PreprocessConfig, images: Sequence[Path] = (), *, bundled: bool = True,
                 synthetic_fallback: bool = False) -> FaceCrops:
    """The parity set: the bundled sample face (when installed) plus ``images``; synthetic faces only as a fallback."""
    from fa3d.runtime.default_model import DefaultModelMissing, sample_path

    paths = list(images)
    if bundled:
        try:
            paths.insert(0, sample_path("astronaut.png"))
        except DefaultModelMissing:
            pass  # an installation without the bundled sample: the caller's images (or synthetic faces) only
    if paths:
        return image_crops(paths, config)
    if synthetic_fallback:
        return synthetic_crops(config)
    raise FileNotFoundError("no real face image for the parity check: the bundled sample astronaut.png is not "
                            "installed and no --parity-image was given")


# ---------------------------------------------------------------- running models

def run_torch(model: "torch.nn.Module", inputs: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    with torch.no_grad():
        out = model.eval()(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)))
    return {k: out[k].detach().cpu().numpy().astype(np.float32) for k in OUTPUT_NAMES}


def run_onnx(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """One ONNX Runtime CPU run over the whole batch (which also exercises the dynamic batch axis)."""
    sess = cpu_session(path, 1)
    outs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(inputs, dtype=np.float32)})
    return {k: np.asarray(v, dtype=np.float32) for k, v in zip(OUTPUT_NAMES, outs)}


def _feeds(crops: FaceCrops):
    """Batch 1 and the whole set in one batch: the dynamic batch axis both ways."""
    return batches_of(crops.inputs, sorted({1, len(crops.inputs)}), source=crops.source)


def torch_vs_onnx(model: "torch.nn.Module", onnx_path: Path, crops: FaceCrops,
                  tol: Tolerance = FP32_TOLERANCE) -> Comparison:
    size = crops.inputs.shape[-1]
    return compare_runners(callable_runner(lambda x: run_torch(model, x), "PyTorch", input_size=size),
                           onnxrt_runner(onnx_path, f"ONNX Runtime ({Path(onnx_path).name})"), _feeds(crops),
                           tolerance=tol.as_dict())


def onnx_vs_onnx(reference: Path, candidate: Path, crops: FaceCrops, tol: Tolerance) -> Comparison:
    return compare_runners(onnxrt_runner(reference, Path(reference).name),
                           onnxrt_runner(candidate, Path(candidate).name), _feeds(crops), tolerance=tol.as_dict())
