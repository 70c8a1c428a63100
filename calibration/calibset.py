"""Calibration and validation sets: face crops made by the runtime's preprocessing, in a neutral ``.npz``.

A set is built once from a folder of images, an image, a video or a dataset (a sequence of
:class:`fa3d.runtime.datasets.samples.FaceSample`), and every consumer (ONNX Runtime static quantization, the
accuracy gate, the optional TensorRT calibrator) only reads the file. Faces are found with the runtime's
detector unless boxes are given (or the dataset has them), and cropped with
:func:`fa3d.runtime.preprocess.prepare`: there is no second crop implementation here.

File format (``FORMAT_VERSION`` 1), written atomically with ``numpy.savez_compressed`` (no pickles):

* ``inputs`` (N, 3, S, S) float32: normalised model inputs, exactly what the model receives;
* ``names`` (N,) str: where each crop came from (``file[#face]`` or ``video@frame``);
* optional ``boxes`` (N, 4) float32 face boxes in the source image (0-based pixels);
* optional ``ypr`` (N, 3) float32 yaw, pitch, roll labels in degrees (package convention; the crops are
  not rotated, so the image pose is the crop pose);
* optional ``landmarks`` (N, 68, 3) float32 labels in crop pixels (validation sets with labels);
* provenance: ``format_version``, ``source``, ``count``, ``preprocess`` (JSON of
  :class:`~fa3d.runtime.preprocess.PreprocessConfig`), ``preprocess_fingerprint``, ``created_by``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fa3d.runtime.atomic import atomic_open, is_special_file
from fa3d.runtime.preprocess import PreprocessConfig, prepare, to_crop
from fa3d.runtime.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, SourceError, video_frames
from fa3d.runtime.sources import list_images as _list_images

FORMAT_VERSION = 1
#: yaw bin edges (degrees) used to spread a set over head poses
YAW_EDGES = (-90.0, -60.0, -30.0, 0.0, 30.0, 60.0, 90.0)

#: image (H, W, 3) uint8 BGR -> face boxes (K, 4) x1, y1, x2, y2 in the landmark-box convention
Detector = Callable[[np.ndarray], np.ndarray]


class CalibrationSetError(ValueError):
    """A calibration set file is missing, malformed or made for another preprocessing."""


@dataclass(frozen=True)
class CalibrationSet:
    inputs: np.ndarray  # (N, 3, S, S) float32
    names: tuple[str, ...]
    preprocess: PreprocessConfig
    source: str
    boxes: np.ndarray | None = None  # (N, 4)
    ypr: np.ndarray | None = None  # (N, 3)
    landmarks: np.ndarray | None = None  # (N, 68, 3) crop pixels
    created_by: str = field(default="")

    def __post_init__(self) -> None:
        n = len(self.inputs)
        s = self.preprocess.input_size
        if self.inputs.dtype != np.float32 or self.inputs.shape[1:] != (3, s, s):
            raise CalibrationSetError(f"inputs must be float32 (N, 3, {s}, {s}), got {self.inputs.dtype} "
                                      f"{self.inputs.shape}")
        if len(self.names) != n:
            raise CalibrationSetError(f"{len(self.names)} names for {n} inputs")
        for key, shape in (("boxes", (4,)), ("ypr", (3,)), ("landmarks", (68, 3))):
            v = getattr(self, key)
            if v is not None and (v.shape != (n, *shape)):
                raise CalibrationSetError(f"{key} must have shape {(n, *shape)}, got {v.shape}")

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, index: Sequence[int] | np.ndarray, source: str | None = None) -> "CalibrationSet":
        idx = np.asarray(index, dtype=np.int64)
        pick = (lambda a: None if a is None else a[idx])  # noqa: E731
        return CalibrationSet(inputs=self.inputs[idx], names=tuple(self.names[i] for i in idx),
                              preprocess=self.preprocess, source=source or self.source,
                              boxes=pick(self.boxes), ypr=pick(self.ypr), landmarks=pick(self.landmarks),
                              created_by=self.created_by)

    def split_holdout(self, every: int = 4) -> tuple["CalibrationSet", "CalibrationSet"]:
        """(calibration, validation): every ``every``-th item is held out for validation."""
        if len(self) < 2 * every:
            raise CalibrationSetError(f"a set of {len(self)} faces is too small to hold out every {every}-th "
                                      "one for validation; give a validation set (--val) or more faces")
        val = np.arange(len(self)) % every == every - 1
        return (self.subset(np.flatnonzero(~val), self.source + " (calibration part)"),
                self.subset(np.flatnonzero(val), self.source + " (held-out part)"))


def _version() -> str:
    try:
        from importlib.metadata import version
        return f"fa3d {version('fa3d')}"
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        return "fa3d (unknown version)"


# ----------------------------------------------------------------------------------------------- file I/O

def save_calibration_set(cs: CalibrationSet, path: str | os.PathLike) -> Path:
    """Write ``cs`` atomically to ``path`` (a ``.npz``)."""
    path = Path(path)
    if path.suffix != ".npz" and not is_special_file(path):  # a device (/dev/null) is written in place
        raise ValueError(f"{path}: a calibration set file must end in .npz")
    arrays: dict[str, np.ndarray] = {
        "inputs": np.ascontiguousarray(cs.inputs, dtype=np.float32),
        "names": np.asarray(cs.names, dtype=np.str_),
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
        "source": np.asarray(cs.source),
        "count": np.asarray(len(cs), dtype=np.int64),
        "preprocess": np.asarray(json.dumps(cs.preprocess.to_dict(), sort_keys=True)),
        "preprocess_fingerprint": np.asarray(cs.preprocess.fingerprint()),
        "created_by": np.asarray(cs.created_by or _version()),
    }
    for key in ("boxes", "ypr", "landmarks"):
        v = getattr(cs, key)
        if v is not None:
            arrays[key] = np.asarray(v, dtype=np.float32)
    with atomic_open(path) as f:  # a file object: np.savez appends no .npz to a device's name
        np.savez_compressed(f, **arrays)
    return path


def load_calibration_set(path: str | os.PathLike, expected: PreprocessConfig | None = None) -> CalibrationSet:
    """Read and validate a set; with ``expected``, refuse one made for another preprocessing."""
    path = Path(path)
    redo = (f"rebuild it with `fa-calib SRC --model MODEL.onnx --out {path.name}` for the model you quantize")
    if not path.is_file():
        raise CalibrationSetError(f"{path}: calibration set not found; {redo}")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - zip, pickle and format errors alike
        raise CalibrationSetError(f"{path}: not a readable .npz calibration set ({e}); {redo}") from None
    missing = [k for k in ("inputs", "names", "format_version", "preprocess", "preprocess_fingerprint", "count")
               if k not in data]
    if missing:
        raise CalibrationSetError(f"{path}: not an fa3d calibration set (lacks {missing}); {redo}")
    version = int(data["format_version"])
    if version != FORMAT_VERSION:
        raise CalibrationSetError(f"{path}: calibration set format {version} is not the format {FORMAT_VERSION} "
                                  f"this fa3d reads; {redo}")
    try:
        config = PreprocessConfig.from_dict(json.loads(str(data["preprocess"])))
    except (ValueError, TypeError) as e:
        raise CalibrationSetError(f"{path}: bad preprocessing description ({e}); {redo}") from None
    if config.fingerprint() != str(data["preprocess_fingerprint"]):
        raise CalibrationSetError(f"{path}: the preprocessing fingerprint does not match its description "
                                  f"(the file was edited or damaged); {redo}")
    if expected is not None and config.fingerprint() != expected.fingerprint():
        diff = {k: (v, expected.to_dict()[k]) for k, v in config.to_dict().items() if expected.to_dict()[k] != v}
        raise CalibrationSetError(
            f"{path}: made for another preprocessing (fingerprint {config.fingerprint()} != the model's "
            f"{expected.fingerprint()}; differences file vs model: {diff}); {redo}")
    inputs = data["inputs"]
    s = config.input_size
    if inputs.dtype != np.float32 or inputs.ndim != 4 or inputs.shape[1:] != (3, s, s):
        raise CalibrationSetError(f"{path}: inputs must be float32 (N, 3, {s}, {s}), got {inputs.dtype} "
                                  f"{inputs.shape}; {redo}")
    if int(data["count"]) != len(inputs) or len(inputs) == 0:
        raise CalibrationSetError(f"{path}: count {int(data['count'])} does not match {len(inputs)} inputs "
                                  f"(or the set is empty); {redo}")
    if not np.isfinite(inputs).all():
        raise CalibrationSetError(f"{path}: inputs contain NaN or infinite values; {redo}")
    try:
        return CalibrationSet(inputs=inputs, names=tuple(str(n) for n in data["names"]), preprocess=config,
                              source=str(data.get("source", "")), boxes=data.get("boxes"), ypr=data.get("ypr"),
                              landmarks=data.get("landmarks"), created_by=str(data.get("created_by", "")))
    except CalibrationSetError as e:
        raise CalibrationSetError(f"{path}: {e}; {redo}") from None


# ------------------------------------------------------------------------------------------ pose spreading

def spread_by_yaw(yaw: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``count`` items spread as evenly as possible over the yaw bins ``YAW_EDGES``.

    Bins are filled round-robin, so rare poses (profiles) are all kept before common ones are thinned;
    items with NaN yaw form a bin of their own. Deterministic for a seed; indices are returned sorted.
    """
    yaw = np.asarray(yaw, dtype=np.float64)
    if count >= len(yaw):
        return np.arange(len(yaw))
    rng = np.random.default_rng(seed)
    bin_of = np.where(np.isnan(yaw), -1, np.digitize(np.clip(np.nan_to_num(yaw), -89.999, 89.999), YAW_EDGES))
    queues = [list(rng.permutation(np.flatnonzero(bin_of == b))) for b in np.unique(bin_of)]
    chosen: list[int] = []
    while len(chosen) < count:
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(int(q.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def yaw_histogram(yaw: np.ndarray) -> dict[str, int]:
    """Counts per yaw bin, for reports."""
    yaw = np.asarray(yaw, dtype=np.float64)
    out = {}
    for lo, hi in zip(YAW_EDGES[:-1], YAW_EDGES[1:]):
        out[f"{lo:+.0f}..{hi:+.0f}"] = int(np.sum((yaw >= lo) & (yaw < hi)))
    return out


# ------------------------------------------------------------------------------------------------ builders

def runtime_detector() -> Detector:
    """The runtime's default face detector as an image -> boxes function.

    The runtime's detector API lives in :mod:`fa3d.runtime.detect`; this is the one place that adapts
    to it. Pass ``detector=`` or ``boxes=`` to the builders to use another one.
    """
    try:
        from fa3d.runtime.detect import make_detector
    except ImportError as e:
        raise RuntimeError("fa3d.runtime.detect is not available in this fa3d; pass face boxes or a "
                           f"detector function to the calibration builder ({e})") from None
    det = make_detector()

    def run(image: np.ndarray) -> np.ndarray:
        return np.asarray(det.detect(image).boxes, dtype=np.float64).reshape(-1, 4)

    return run


def _largest(boxes: np.ndarray, k: int | None) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if k is None or len(boxes) <= k:
        return boxes
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area)[:k]]


@dataclass
class _Collector:
    config: PreprocessConfig
    inputs: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    ypr: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)

    def add(self, image: np.ndarray, boxes: np.ndarray, name: str, ypr: np.ndarray | None = None,
            landmarks: np.ndarray | None = None) -> None:
        if len(boxes) == 0:
            return
        p = prepare(image, boxes, self.config)
        for i in range(len(boxes)):
            self.inputs.append(p.inputs[i])
            self.names.append(name if len(boxes) == 1 else f"{name}#{i}")
            self.boxes.append(np.asarray(boxes[i], dtype=np.float32))
        if ypr is not None:
            self.ypr.append(np.asarray(ypr, dtype=np.float32).reshape(3))
        if landmarks is not None:
            self.landmarks.append(to_crop(np.asarray(landmarks, dtype=np.float64)[None], p.transforms[:1])[0]
                                  .astype(np.float32))

    def finish(self, source: str) -> CalibrationSet:
        if not self.inputs:
            raise CalibrationSetError(f"{source}: no face was found; give face boxes, another detector, or "
                                      "images where a face fills a reasonable part of the frame")
        n = len(self.inputs)
        ypr = np.stack(self.ypr) if len(self.ypr) == n else None
        lms = np.stack(self.landmarks) if len(self.landmarks) == n else None
        return CalibrationSet(inputs=np.stack(self.inputs).astype(np.float32), names=tuple(self.names),
                              preprocess=self.config, source=source, boxes=np.stack(self.boxes), ypr=ypr,
                              landmarks=lms, created_by=_version())


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The images of ``folder`` and its subfolders (:func:`fa3d.runtime.sources.list_images`)."""
    return _list_images(folder, recursive=True)


def build_from_images(images: str | os.PathLike | Sequence[str | os.PathLike], config: PreprocessConfig, *,
                      detector: Detector | None = None, boxes: dict[str, np.ndarray] | None = None,
                      max_faces: int | None = None, faces_per_image: int | None = 1,
                      progress: bool = False) -> CalibrationSet:
    """Crops from a folder (searched recursively), one image, or a list of image files.

    ``boxes`` maps an image's file name (or path) to its face boxes (K, 4); other images go through
    ``detector`` (default: the runtime's). ``faces_per_image`` keeps the largest faces of each image.
    """
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        paths = list_images(p) if p.is_dir() else [p]
        source = str(p)
    else:
        paths = [Path(x) for x in images]
        source = f"{len(paths)} images"
    if not paths:
        raise CalibrationSetError(f"{source}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    col = _Collector(config)
    det = None
    iterator: Iterable[Path] = paths
    if progress:
        from tqdm import tqdm
        iterator = tqdm(paths, desc="calibration images", unit="img")
    for path in iterator:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise CalibrationSetError(f"{path}: cannot be decoded as an image; remove it or convert it")
        given = None if boxes is None else boxes.get(str(path), boxes.get(path.name))
        if given is None:
            det = det or detector or runtime_detector()
            found = det(img)
        else:
            found = given
        col.add(img, _largest(found, faces_per_image), path.name)
        if max_faces is not None and len(col.inputs) >= max_faces:
            break
    cs = col.finish(source)
    return cs.subset(np.arange(min(len(cs), max_faces or len(cs))))


def build_from_video(video: str | os.PathLike, config: PreprocessConfig, *, detector: Detector | None = None,
                     every: int = 5, max_faces: int | None = None, faces_per_frame: int | None = 1,
                     frames: Iterable[int] | None = None, progress: bool = False) -> CalibrationSet:
    """Crops from every ``every``-th frame of a video (or the listed frame indices)."""
    video = Path(video)
    wanted = None if frames is None else set(int(f) for f in frames)
    det = detector or runtime_detector()
    col = _Collector(config)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(desc="calibration frames", unit="frame")
    try:
        for frame in video_frames(video, every=1 if wanted is not None else max(1, every)):
            if bar is not None:
                bar.update(1)
            if wanted is not None and frame.index not in wanted:
                continue
            col.add(frame.image, _largest(det(frame.image), faces_per_frame), f"{video.name}@{frame.index}")
            if max_faces is not None and len(col.inputs) >= max_faces:
                break
    except SourceError as e:
        raise CalibrationSetError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
    cs = col.finish(str(video))
    return cs.subset(np.arange(min(len(cs), max_faces or len(cs))))


def build_from_samples(samples: Iterable, config: PreprocessConfig, *, max_faces: int | None = None,
                       seed: int = 0, source: str = "dataset", keep_labels: bool = True) -> CalibrationSet:
    """Crops from dataset records (:class:`fa3d.runtime.datasets.samples.FaceSample`) using their boxes.

    With pose labels (``ypr`` or a real ``yaw_gt``) and ``max_faces``, the set is spread over yaw bins
    (:func:`spread_by_yaw`); ``keep_labels`` stores 68-point labels (in crop pixels) and poses, which
    makes the set usable as a labelled validation set for the accuracy gate.
    """
    col = _Collector(config)
    yaws: list[float] = []
    for k, s in enumerate(samples):
        ypr = s.ypr if (keep_labels and s.ypr is not None) else None
        lms = s.landmarks if keep_labels else None
        col.add(s.image, np.asarray(s.box, dtype=np.float64)[None], s.name or f"{source}#{k}", ypr, lms)
        yaw = s.ypr[0] if s.ypr is not None else (s.yaw_gt if s.yaw_gt is not None else np.nan)
        yaws.append(float(yaw))
    cs = col.finish(source)
    if max_faces is None or max_faces >= len(cs):
        return cs
    return cs.subset(spread_by_yaw(np.asarray(yaws), max_faces, seed=seed))


def build_from_crops(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray] | np.ndarray,
                     config: PreprocessConfig, *, names: Sequence[str] | None = None,
                     landmarks: Sequence[np.ndarray] | None = None, ypr: Sequence[np.ndarray] | None = None,
                     source: str = "in-memory faces") -> CalibrationSet:
    """A set from in-memory (image, face box) pairs, e.g. a validation split prepared by the caller.

    ``landmarks`` (68, 3) in image pixels and ``ypr`` (3,) degrees, when given, are stored as labels.
    """
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} boxes")
    col = _Collector(config)
    for i, (img, box) in enumerate(zip(images, boxes)):
        col.add(img, np.asarray(box, dtype=np.float64).reshape(1, 4), names[i] if names else f"face{i}",
                None if ypr is None else ypr[i], None if landmarks is None else landmarks[i])
    return col.finish(source)


def build_calibration_set(src: str | os.PathLike, config: PreprocessConfig, *, detector: Detector | None = None,
                          max_faces: int | None = None, every: int = 5, progress: bool = False) -> CalibrationSet:
    """Dispatch on ``src``: a folder of images, one image or a video file."""
    p = Path(src)
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        if not p.exists():
            raise CalibrationSetError(f"{p}: not found")
        return build_from_images(p, config, detector=detector, max_faces=max_faces, progress=progress)
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return build_from_video(p, config, detector=detector, every=every, max_faces=max_faces, progress=progress)
    raise CalibrationSetError(f"{p}: expected a folder of images, an image ({', '.join(IMAGE_SUFFIXES)}) or a "
                              f"video ({', '.join(VIDEO_SUFFIXES)})")
