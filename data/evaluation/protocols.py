"""The literature's evaluation protocols, for prediction files and for models (numpy/OpenCV; no torch).

Protocols (``DATASETS``):

* ``aflw2000-3d`` (3DDFA): 2D NME over the 68 points (``pt3d_68`` x, y, 0-based), normalised by
  ``sqrt(w*h)`` of the GT landmark box, binned by |GT yaw|; pose MAE over the images whose three GT
  angles lie within +-99 deg.
* ``aflw`` / ``aflw19k-val`` (3DDFA crop protocol, aflw19k layout; ``aflw`` = every crop of the folder,
  ``aflw19k-val`` = its ``val`` split): NME over the *visible* AFLW points that have a checked iBUG
  correspondence (``schema.AFLW21_TO_IBUG68``: 4 eye corners, nose tip, 2 mouth corners, chin),
  normalised by ``sqrt(w*h)`` of the box of *all* visible GT points of the crop, binned by |GT yaw|;
  yaw MAE against AFLW's yaw (pitch and roll are not labelled: ``None``).
* ``aflw19k-val-teacher``: the aflw19k val crops scored against the 3DDFA_V2 teacher's labels
  (``teacher_3ddfa_v2_mb05.npz``): 2D NME over the 68 points normalised by ``sqrt(w*h)`` of the teacher's
  68-point box, binned by the teacher's |yaw|; pose MAE against the teacher's angles (every crop: no +-99 deg
  filter). Same crops and boxes as ``aflw19k-val``, so one predictions file serves both.
  ``aflw19k-val-teacher-tta``: the same against the test-time-augmented teacher
  (``teacher_3ddfa_v2_mb05_tta.npz``, the default model's training labels).
* ``helen-test`` (the ``val`` split of a ``faces_extra`` folder: 300W HELEN test crops cut with the 3DDFA
  crop protocol): 2D NME over the 51 inner points (17-67; 300W's jaw line follows the silhouette, the
  3D-model jaw of 3DDFA-style models does not) of the human 300W annotation, normalised by ``sqrt(w*h)`` of
  the human 68-point box, binned by the teacher's |yaw| (``teacher_3ddfa_v2_mb05_tta.npz``); no pose.
* ``biwi``: pose MAE (yaw, pitch, roll) over every frame (failures = frames without a face).

Failures (an image without a prediction) are excluded from the means, counted, and listed
(:mod:`fa3d.data.evaluation.metrics`).

Boxes for a model (``box='gt'``, the default): the tight box of the GT landmarks (AFLW2000-3D: the 68
points; AFLW crops: the protocol box whose sqrt(2) enlargement is the whole crop), which the runtime's
``process(boxes=...)`` enlarges by 3DDFA's rule (``preprocess.crop_boxes``, not clipped to the image).
``box='points'``: the tight box of the 68 points the dataset scores against (``aflw19k-val-teacher*``: the
teacher's points, i.e. the benchmark's rule applied to the teacher; ``aflw2000-3d``: the same as ``gt``).
``box='detector'``: the runtime's own detector; the face overlapping the GT box most is used (BIWI:
the largest face), and no face = failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fa3d.data.datasets._io import tight_box
from fa3d.data.datasets.aflw import protocol_box, read_aflw_labels
from fa3d.data.datasets.aflw2000 import list_aflw2000, read_aflw2000_labels
from fa3d.data.datasets.biwi import Biwi
from fa3d.data.datasets.mix import FacesExtraMix, read_teacher
from fa3d.runtime import pose as pose_mod
from fa3d.runtime import schema
from fa3d.runtime.aligner import FaceAligner, FaceAlignerOptions
from fa3d.runtime.atomic import atomic_open
from fa3d.runtime.boxes import box_iou

from . import metrics

BOX_CHOICES = ("gt", "points", "detector")
DATASETS = ("aflw2000-3d", "aflw", "aflw19k-val", "aflw19k-val-teacher", "aflw19k-val-teacher-tta", "helen-test",
            "biwi")
#: the 51 inner points of the iBUG 68 (brows, nose, eyes, mouth): ``helen-test`` scores these
INNER51 = np.arange(17, 68)


@dataclass(frozen=True)
class Predictions:
    """Predictions for named images: ``landmarks`` (N, 68, 3) 0-based image px, ``pose`` (N, 3) yaw,
    pitch, roll degrees (package convention). NaN rows are allowed in neither."""

    names: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray

    def index(self) -> dict[str, int]:
        return {str(n): i for i, n in enumerate(self.names)}


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read and validate a ``PRED.npz`` (``names`` (N,), ``landmarks`` (N,68,3), ``pose`` (N,3))."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: predictions file not found")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npz file ({e})") from e
    with z:
        missing = {"names", "landmarks", "pose"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}; a predictions file holds names (N,), "
                             "landmarks (N,68,3) and pose (N,3: yaw, pitch, roll degrees)")
        names, lm, pose = z["names"], z["landmarks"], z["pose"]
    n = len(names)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise ValueError(f"{path}: names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    if lm.shape != (n, 68, 3) or pose.shape != (n, 3):
        raise ValueError(f"{path}: expected landmarks ({n}, 68, 3) and pose ({n}, 3), got {lm.shape} and {pose.shape}")
    if not (np.issubdtype(lm.dtype, np.floating) and np.issubdtype(pose.dtype, np.floating)):
        raise ValueError(f"{path}: landmarks and pose must be floating point, got {lm.dtype} and {pose.dtype}")
    if not (np.isfinite(lm).all() and np.isfinite(pose).all()):
        raise ValueError(f"{path}: landmarks and pose must be finite; leave a failed image out instead "
                         "(it is counted as a failure)")
    if len(set(names.tolist())) != n:
        raise ValueError(f"{path}: names must be unique")
    names = names.astype(str)
    return Predictions(names=names, landmarks=lm.astype(np.float64), pose=pose.astype(np.float64))


#: what fa-eval scores as the pose: ``predicted`` (as the model / runtime or the file reports it), or, from
#: the runtime's aligner (model mode) or recomputed from a file, ``head`` / ``landmarks`` / ``blend``
POSE_SOURCES = ("predicted", "head", "landmarks", "blend")


def with_pose_from(preds: Predictions, source: str) -> Predictions:
    """Predictions of a file with their pose recomputed: ``predicted`` (unchanged), ``landmarks`` (the
    rotation fitted to the predicted 3D landmarks, :func:`fa3d.runtime.pose.rotation_from_landmarks`) or
    ``blend`` (the chordal mean of the file's pose and that fit). A file holds one pose, so ``head`` is refused."""
    if source not in POSE_SOURCES:
        raise ValueError(f"pose source must be one of {POSE_SOURCES}, got {source!r}")
    if source == "head":
        raise ValueError("a predictions file holds one pose, whatever made it: use --pose-source predicted "
                         "(or run the model with --pose-source head)")
    if source == "predicted" or not len(preds.names):
        return preds
    r = pose_mod.reported_rotation(source, pose_mod.euler_to_matrix(preds.pose), preds.landmarks)
    return Predictions(names=preds.names, landmarks=preds.landmarks, pose=pose_mod.matrix_to_euler(r))


def save_predictions(path: str | os.PathLike, preds: Predictions) -> None:
    with atomic_open(path) as f:  # a file object: np.savez appends no .npz to a device's name
        np.savez(f, names=np.asarray(preds.names, dtype=np.str_),
                 landmarks=np.asarray(preds.landmarks, np.float32), pose=np.asarray(preds.pose, np.float32))


@dataclass(frozen=True)
class GroundTruth:
    """What a protocol needs, aligned by row."""

    dataset: str
    names: np.ndarray  # (N,) str, the keys predictions are matched by
    paths: tuple[Path, ...]  # image files
    boxes: np.ndarray  # (N, 4) face boxes for box='gt'
    yaw: np.ndarray  # (N,) GT yaw for the bins
    lm68: np.ndarray | None = None  # (N, 68, 2|3) (aflw2000-3d, aflw19k-val-teacher)
    pts21: np.ndarray | None = None  # (N, 21, 2) NaN = invisible (aflw)
    ypr: np.ndarray | None = None  # (N, 3) (aflw2000-3d, aflw19k-val-teacher, biwi)

    def __len__(self) -> int:
        return len(self.names)


def load_ground_truth(dataset: str, data: str | os.PathLike, limit: int | None = None,
                      biwi_protocol: str = "all") -> GroundTruth:
    """The GT of ``dataset`` (one of :data:`DATASETS`) from its folder ``data``."""
    data = Path(data)
    if dataset == "aflw2000-3d":
        stems = list_aflw2000(data)[:limit]
        lms, yprs = zip(*(read_aflw2000_labels(data / f"{s}.mat") for s in stems))
        lm = np.stack(lms)
        return GroundTruth(dataset, np.array([f"{s}.jpg" for s in stems]),
                           tuple(data / f"{s}.jpg" for s in stems),
                           np.stack([tight_box(p) for p in lm]), np.stack(yprs)[:, 0], lm68=lm, ypr=np.stack(yprs))
    if dataset == "helen-test":
        return _helen_test(data, limit)
    if dataset in ("aflw", "aflw19k-val", "aflw19k-val-teacher", "aflw19k-val-teacher-tta"):
        lab = read_aflw_labels(data)
        rows = lab.select(None if dataset == "aflw" else "val")[:limit]
        names = lab.names[rows].astype(str)
        first = cv2.imread(str(data / "images" / names[0]))
        if first is None:
            raise FileNotFoundError(f"{data / 'images' / names[0]}: cannot read the first crop")
        box = protocol_box(first.shape[1], first.shape[0])
        paths = tuple(data / "images" / n for n in names)
        boxes = np.repeat(box[None], len(rows), 0)
        if dataset.startswith("aflw19k-val-teacher"):
            tta = dataset.endswith("-tta")
            lm, ypr = read_teacher(data, lab.names, "teacher_3ddfa_v2_mb05_tta.npz" if tta else "")
            lm, ypr = lm[rows].astype(np.float64), ypr[rows].astype(np.float64)
            return GroundTruth(dataset, names, paths, boxes, ypr[:, 0], lm68=lm, ypr=ypr)
        return GroundTruth(dataset, names, paths, boxes, lab.yaw_deg[rows].astype(np.float64),
                           pts21=lab.pts21[rows].astype(np.float64))
    if dataset == "biwi":
        ds = Biwi(data, protocol=biwi_protocol, part="test")
        idx = range(len(ds))[:limit]
        ypr = np.stack([ds.ypr(i) for i in idx]).astype(np.float64)
        return GroundTruth(dataset, np.array([ds.name(i) for i in idx]), tuple(ds.frames[i] for i in idx),
                           np.full((len(idx), 4), np.nan), ypr[:, 0], ypr=ypr)
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


def _helen_test(data: Path, limit: int | None) -> GroundTruth:
    ds = FacesExtraMix(data, "val")
    keep = [i for i in range(len(ds)) if ds.human68(i) is not None][:limit]
    if not keep:
        raise ValueError(f"{data}: no val crop with human 68 points (not a faces_extra folder?)")
    rows = ds.rows[keep]
    names = ds.names[rows].astype(str)
    first = cv2.imread(str(data / "images" / names[0]))
    if first is None:
        raise FileNotFoundError(f"{data / 'images' / names[0]}: cannot read the first crop")
    box = protocol_box(first.shape[1], first.shape[0])
    human = np.stack([ds.human68(i) for i in keep]).astype(np.float64)
    return GroundTruth("helen-test", names, tuple(data / "images" / n for n in names),
                       np.repeat(box[None], len(keep), 0), ds.teacher_ypr[rows, 0].astype(np.float64), lm68=human)


def _aflw_from_68(lm68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted 68 points (N, 68, >=2) -> (N, 21, 2) AFLW layout with the checked points, and (21,) mask."""
    out = np.full((len(lm68), 21, 2), np.nan)
    mask = np.zeros(21, bool)
    for a, b in schema.AFLW21_TO_IBUG68.items():
        out[:, a] = lm68[:, b, :2]
        mask[a] = True
    return out, mask


def evaluate(gt: GroundTruth, preds: Predictions) -> metrics.EvalResult:
    """Score ``preds`` on ``gt`` with the dataset's protocol; images without a prediction are failures."""
    idx = preds.index()
    rows = np.array([idx.get(str(n), -1) for n in gt.names])
    have = rows >= 0
    failed = tuple(str(n) for n in gt.names[~have])
    r = rows[have]
    n_ok = int(have.sum())
    nme2d = pose = None
    per_image = np.zeros(0)
    scored = gt.names[have]
    unscored = 0
    if gt.dataset == "helen-test":
        if n_ok:
            per_image = metrics.nme(preds.landmarks[r][:, INNER51], gt.lm68[have][:, INNER51],
                                    norm=metrics.gt_box_size(gt.lm68[have]))
            nme2d = metrics.yaw_bin_means(per_image, gt.yaw[have])
    elif gt.dataset in ("aflw2000-3d", "aflw19k-val-teacher", "aflw19k-val-teacher-tta"):
        if n_ok:
            per_image = metrics.nme(preds.landmarks[r], gt.lm68[have])
            nme2d = metrics.yaw_bin_means(per_image, gt.yaw[have])
            limit = metrics.POSE_FILTER_DEG if gt.dataset == "aflw2000-3d" else None
            pose = metrics.pose_mae(preds.pose[r], gt.ypr[have], limit=limit)
    elif gt.dataset in ("aflw", "aflw19k-val"):
        if n_ok:
            p21, m21 = _aflw_from_68(preds.landmarks[r])
            g21 = gt.pts21[have]
            vis = np.isfinite(g21).all(-1)
            mask = vis & m21[None]
            usable = mask.any(1)
            # crops without any visible checked point cannot be scored: reported, not hidden
            unscored = int((~usable).sum())
            norm = metrics.gt_box_size(g21)
            per_image = metrics.nme(p21[usable], g21[usable], mask[usable], norm[usable])
            scored = scored[usable]
            nme2d = metrics.yaw_bin_means(per_image, gt.yaw[have][usable])
            pose = metrics.pose_mae(preds.pose[r][:, :1], gt.yaw[have][:, None], angles=("yaw",))
    elif gt.dataset == "biwi":
        if n_ok:
            pose = metrics.pose_mae(preds.pose[r], gt.ypr[have], limit=None)
    else:
        raise ValueError(f"unknown dataset {gt.dataset!r}")
    if n_ok == 0:
        empty_nme = {k: None for k in ("0-30", "30-60", "60-90", "balanced", "all")}
        nme2d = None if gt.dataset == "biwi" else empty_nme
        pose = {k: None for k in ("yaw", "pitch", "roll", "mean")}
    return metrics.EvalResult(protocol=gt.dataset, num_images=len(gt), failures=len(failed), nme2d=nme2d,
                              pose_mae=pose, per_image_nme=per_image, failed_names=failed,
                              scored_names=tuple(str(n) for n in scored) if len(per_image) else (),
                              unscored=unscored)


# --- models through the runtime -------------------------------------------------------------------------

def _open_aligner(model: str | os.PathLike, pose_source: str = "predicted"):
    """The runtime's aligner for an artifact (ONNX, engine or checkpoint, as the runtime supports);
    ``pose_source`` other than ``predicted`` sets :attr:`FaceAlignerOptions.pose_source`."""
    if pose_source == "predicted":
        return FaceAligner.from_artifact(model)
    return FaceAligner.from_artifact(model, FaceAlignerOptions(pose_source=pose_source))


def predict_with_model(model: str | os.PathLike, gt: GroundTruth, box: str = "gt",
                       progress: Callable[[Iterator], Iterator] | None = None,
                       aligner=None, pose_source: str = "predicted") -> Predictions:
    """Run a model through ``fa3d.runtime.FaceAligner`` on the GT's images; no face -> no prediction.

    ``aligner`` (an object with ``process(image_bgr, boxes=None) -> list`` of results with
    ``.landmarks`` (68, 3) and ``.yaw_pitch_roll`` (3,)) replaces ``FaceAligner.from_artifact(model)``.
    """
    if box not in BOX_CHOICES:
        raise ValueError(f"box must be one of {', '.join(BOX_CHOICES)}, got {box!r}")
    if box == "gt" and gt.dataset == "biwi":
        box = "detector"  # BIWI has no landmark box
    boxes = gt.boxes
    if box == "points":
        if gt.lm68 is None:
            raise ValueError(f"box 'points' needs a dataset scored on 68 points; {gt.dataset} is not")
        boxes = np.stack([tight_box(p) for p in gt.lm68])
    own = aligner is None
    if own:
        aligner = _open_aligner(model, pose_source)
    names, lms, poses = [], [], []
    try:
        it = range(len(gt))
        for i in (progress(it) if progress else it):
            img = cv2.imread(str(gt.paths[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f"{gt.paths[i]}: cannot read the image")
            if box in ("gt", "points"):
                res = aligner.process(img, boxes=boxes[i][None].astype(np.float32))
                face = res[0] if res else None
            else:
                res = aligner.process(img)
                face = None
                if res:
                    if np.isfinite(gt.boxes[i]).all():
                        face = max(res, key=lambda f: box_iou(np.asarray(f.box, float), gt.boxes[i]))
                        if box_iou(np.asarray(face.box, float), gt.boxes[i]) <= 0.0:
                            face = None
                    else:
                        face = max(res, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
            if face is None:
                continue
            names.append(str(gt.names[i]))
            lms.append(np.asarray(face.landmarks, np.float64))
            poses.append(np.asarray(face.yaw_pitch_roll, np.float64))
    finally:
        if own and hasattr(aligner, "close"):
            aligner.close()
    return Predictions(names=np.array(names, dtype=str),
                       landmarks=np.stack(lms) if lms else np.zeros((0, 68, 3)),
                       pose=np.stack(poses) if poses else np.zeros((0, 3)))
