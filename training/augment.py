"""Training examples from FaceSample records: augmentation and targets, through the runtime's preprocessing.

Cropping, warping, normalisation and the mapping of labels into the crop all use
:mod:`fa3d.runtime.preprocess` (the one implementation); this module only draws the random parameters
(box centre/scale jitter, in-plane angle, flip, colour, blur, occlusion, resolution, JPEG quality) and makes negative crops for the
confidence head. Randomness comes from the generator passed in (one per example, seeded by
``(seed, epoch, index)`` in the dataset), so an example does not depend on worker scheduling.

Horizontal flips mirror the image, the 68 landmarks (:func:`fa3d.runtime.schema.mirror_landmarks`), the
pose (:func:`fa3d.runtime.pose.mirror_euler`), the AFLW-21 points (:data:`AFLW21_MIRROR`, defined here)
and the dense points with the template's nearest-point mirror permutation
(:func:`fa3d.training.dense_template.mirror_permutation`; without one, dense labels of flipped samples
are dropped for that example, not guessed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fa3d.data.datasets.samples import FaceSample
from fa3d.runtime import pose, preprocess
from fa3d.runtime.boxes import box_iou
from fa3d.runtime.lazy import lazy_import
from fa3d.runtime.schema import NUM_LANDMARKS, mirror_landmarks

torch = lazy_import("torch", extra="train")  # only collate() needs it

#: AFLW-21 point i of a flipped face is point AFLW21_MIRROR[i] of the original
AFLW21_MIRROR = np.array([5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 16, 15, 14, 13, 12, 19, 18, 17, 20])


@dataclass(frozen=True)
class AugmentConfig:
    scale_jitter: float = 0.1  # crop side multiplied by U(1 - j, 1 + j)
    shift_jitter: float = 0.08  # crop centre moved by U(-j, j) * side in x and y
    rotation_deg: float = 30.0  # in-plane angle U(-r, r)
    flip_prob: float = 0.5
    color_jitter: float = 0.3  # per-channel gain U(1 - c, 1 + c) and brightness offset
    blur_prob: float = 0.2
    occlusion_prob: float = 0.2
    noise_std: float = 3.0
    negative_prob: float = 0.1  # an example becomes a crop without a face (confidence target 0), drawn from:
    negative_context: float = 0.0  # ... a window beside the face (hair, clothes, background; box IoU < 0.3)
    negative_masked: float = 0.0  # ... the face's own crop with the face painted over (a blank, noise, a blur)
    # (the rest of the negatives: far-shifted crops, mostly the black border beyond the image)
    lowres_prob: float = 0.0  # the crop is downsampled to U(lowres_min, 1) x its size and upsampled back
    lowres_min: float = 0.35
    jpeg_prob: float = 0.0  # the crop is JPEG-compressed at a quality U(jpeg_quality_min, 95)
    jpeg_quality_min: int = 30

    def __post_init__(self) -> None:
        for f in ("scale_jitter", "shift_jitter", "rotation_deg", "noise_std", "color_jitter"):
            if getattr(self, f) < 0:
                raise ValueError(f"[augment] {f} must be >= 0, got {getattr(self, f)}")
        for f in ("flip_prob", "blur_prob", "occlusion_prob", "negative_prob", "lowres_prob", "jpeg_prob"):
            if not 0.0 <= getattr(self, f) <= 1.0:
                raise ValueError(f"[augment] {f} is a probability in [0, 1], got {getattr(self, f)}")
        if not 0.05 <= self.lowres_min <= 1.0:
            raise ValueError(f"[augment] lowres_min must lie in [0.05, 1], got {self.lowres_min}")
        if self.negative_context < 0 or self.negative_masked < 0 or self.negative_context + self.negative_masked > 1:
            raise ValueError("[augment] negative_context and negative_masked are shares of the negatives: each >= 0, "
                             f"together <= 1, got {self.negative_context} and {self.negative_masked}")
        if not 1 <= self.jpeg_quality_min <= 95:
            raise ValueError(f"[augment] jpeg_quality_min must lie in [1, 95], got {self.jpeg_quality_min}")

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _flip(sample: FaceSample, dense_mirror: np.ndarray | None) -> dict:
    w = sample.image.shape[1]
    out = {"image": np.ascontiguousarray(sample.image[:, ::-1]),
           "box": np.array([w - 1 - sample.box[2], sample.box[1], w - 1 - sample.box[0], sample.box[3]])}
    out["landmarks"] = None if sample.landmarks is None else mirror_landmarks(sample.landmarks, w)
    out["ypr"] = None if sample.ypr is None else pose.mirror_euler(sample.ypr)
    out["yaw_gt"] = None if sample.yaw_gt is None else -float(sample.yaw_gt)
    if sample.pts21 is not None:
        p = np.asarray(sample.pts21, dtype=np.float64)[AFLW21_MIRROR].copy()
        p[:, 0] = w - 1 - p[:, 0]
        out["pts21"] = p
    else:
        out["pts21"] = None
    if sample.dense is not None and dense_mirror is not None and len(dense_mirror) == len(sample.dense):
        d = np.asarray(sample.dense, dtype=np.float64)[dense_mirror].copy()
        d[:, 0] = w - 1 - d[:, 0]
        out["dense"] = d
    else:
        out["dense"] = None
    return out


def _degrade(crop: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Resolution and compression like a camera's: downsample + upsample back, JPEG at a random quality."""
    s = crop.shape[0]
    if cfg.lowres_prob > 0 and rng.random() < cfg.lowres_prob:
        small = max(8, int(round(s * rng.uniform(cfg.lowres_min, 1.0))))
        down = cv2.INTER_AREA if rng.random() < 0.5 else cv2.INTER_LINEAR
        up = cv2.INTER_LINEAR if rng.random() < 0.7 else cv2.INTER_NEAREST
        crop = cv2.resize(cv2.resize(crop, (small, small), interpolation=down), (s, s), interpolation=up)
    if cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality_min, 96))
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            crop = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(crop.shape)
    return crop


def _photometric(crop: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    crop = _degrade(crop, cfg, rng)
    img = crop.astype(np.float32)
    if cfg.color_jitter > 0:
        gain = rng.uniform(1 - cfg.color_jitter, 1 + cfg.color_jitter, size=3)
        offset = rng.uniform(-40, 40) * cfg.color_jitter
        img = img * gain.astype(np.float32) + np.float32(offset)
    if cfg.occlusion_prob > 0 and rng.random() < cfg.occlusion_prob:
        s = img.shape[0]
        ow, oh = rng.uniform(0.15, 0.45, size=2) * s
        x0, y0 = rng.uniform(0, s - ow), rng.uniform(0, s - oh)
        img[int(y0):int(y0 + oh), int(x0):int(x0 + ow)] = rng.uniform(0, 255, size=3).astype(np.float32)
    if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    if cfg.noise_std > 0:
        img = img + rng.normal(0, cfg.noise_std, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def face_free(window: np.ndarray, face_box: np.ndarray, crop_scale: float) -> bool:
    """Whether a crop window (x1, y1, x2, y2) holds no face: at most 30 % of the face box inside it, the face
    at most 40 % of the window, and the face box the window implies (side / crop_scale, as the runtime crops)
    overlapping the true face box by IoU < 0.3."""
    iw = max(0.0, min(window[2], face_box[2]) - max(window[0], face_box[0]))
    ih = max(0.0, min(window[3], face_box[3]) - max(window[1], face_box[1]))
    inter = iw * ih
    face_area = (face_box[2] - face_box[0]) * (face_box[3] - face_box[1])
    win_area = (window[2] - window[0]) * (window[3] - window[1])
    c, half = (window[:2] + window[2:]) / 2, (window[2] - window[0]) / 2 / crop_scale
    implied = np.concatenate([c - half, c + half])
    return inter <= 0.3 * face_area and inter <= 0.4 * win_area and box_iou(implied, face_box) < 0.3


def negative_window(face_box: np.ndarray, shape: tuple, crop_scale: float, rng: np.random.Generator,
                     beside: bool, tries: int = 20) -> tuple[np.ndarray, float] | None:
    """A face-free crop (centre, side) (:func:`face_free`). ``beside``: a window at least 60 % inside the image,
    smaller than the face's crop, so that it shows hair, skin, clothes or background (partial faces at the edge
    included); else a crop shifted far from the face, mostly the black border beyond the image. None when no
    such window is found."""
    h, w = shape[:2]
    fw = max(face_box[2] - face_box[0], face_box[3] - face_box[1])
    fc = (face_box[:2] + face_box[2:]) / 2
    for _ in range(tries):
        if beside:
            side = fw * crop_scale * rng.uniform(0.3, 1.0)
            c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        else:
            side = fw * crop_scale * rng.uniform(0.7, 1.3)
            a = rng.uniform(0, 2 * np.pi)
            c = fc + fw * crop_scale * rng.uniform(0.8, 1.3) * np.array([np.cos(a), np.sin(a)])
        win = np.concatenate([c - side / 2, c + side / 2])
        inside = max(0.0, min(win[2], w) - max(win[0], 0)) * max(0.0, min(win[3], h) - max(win[1], 0))
        if (not beside or inside >= 0.6 * side * side) and face_free(win, face_box, crop_scale):
            return c, side
    return None


def paint_over_face(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``image`` with the face (the hull of its 68 points, or their box, grown by 0-25 %) painted over
    with one colour, noise or a heavy blur: a person turned away, a masked photo, a blanked face."""
    out = image.copy()
    pts = landmarks[:, :2]
    c = pts.mean(axis=0)
    grown = c + (pts - c) * rng.uniform(1.0, 1.25)
    mask = np.zeros(image.shape[:2], np.uint8)
    if rng.random() < 0.5:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(grown).astype(np.int32)), 1)
    else:
        x1, y1 = np.floor(grown.min(axis=0)).astype(int)
        x2, y2 = np.ceil(grown.max(axis=0)).astype(int)
        mask[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = 1
    fill = rng.random()
    if fill < 0.55:
        paint = np.broadcast_to(rng.integers(0, 256, size=3).astype(np.uint8), image.shape)
    elif fill < 0.85:
        paint = rng.integers(0, 256, size=image.shape, dtype=np.uint8)
    else:
        k = int(max(image.shape[:2]) // 6) * 2 + 1
        paint = cv2.GaussianBlur(cv2.GaussianBlur(image, (k, k), 0), (k, k), 0)
    sel = mask.astype(bool)
    out[sel] = paint[sel]
    return out


def make_example(sample: FaceSample, pre: preprocess.PreprocessConfig, cfg: AugmentConfig,
                 rng: np.random.Generator, num_dense: int, dense_mirror: np.ndarray | None = None) -> dict:
    """One training example as numpy arrays: ``image`` (3, S, S) float32 normalised, crop-frame targets and
    masks (see :func:`collate` for the keys)."""
    s = pre.input_size
    if cfg.flip_prob > 0 and rng.random() < cfg.flip_prob:
        lab = _flip(sample, dense_mirror)
    else:
        lab = {"image": sample.image, "box": np.asarray(sample.box, dtype=np.float64),
               "landmarks": sample.landmarks, "ypr": sample.ypr, "yaw_gt": sample.yaw_gt,
               "pts21": sample.pts21, "dense": sample.dense}
    # the sample's face box (loaders give the tight 68-point box, preprocess.landmark_box, when they can)
    face_box = np.asarray(lab["box"], dtype=np.float64)[None]
    cb = preprocess.crop_boxes(face_box, pre.crop_scale)[0]
    side = cb[2] - cb[0]
    centre = (cb[:2] + cb[2:]) / 2
    negative = cfg.negative_prob > 0 and rng.random() < cfg.negative_prob
    image = lab["image"]
    shift = rng.uniform(-cfg.shift_jitter, cfg.shift_jitter, size=2)
    scale = rng.uniform(1 - cfg.scale_jitter, 1 + cfg.scale_jitter)
    if negative:
        kind = rng.random()
        placed = None
        if kind < cfg.negative_context:
            placed = negative_window(face_box[0], image.shape, pre.crop_scale, rng, beside=True)
        if placed is None and kind < cfg.negative_context + cfg.negative_masked and lab["landmarks"] is not None:
            image = paint_over_face(image, np.asarray(lab["landmarks"], np.float64), rng)
        else:
            placed = placed or negative_window(face_box[0], image.shape, pre.crop_scale, rng, beside=False)
            if placed is None:  # nowhere face-free (a face filling a huge image): paint it over instead
                image = paint_over_face(image, np.asarray(lab["landmarks"], np.float64), rng) \
                    if lab["landmarks"] is not None else np.zeros_like(image)
            else:
                (centre, side), scale, shift = placed, 1.0, 0.0
    angle = float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)) if cfg.rotation_deg > 0 else 0.0
    crop_box = preprocess.jitter_box(centre, side, scale, shift)[None]
    m = preprocess.crop_transforms(crop_box, s, angle)
    crop = preprocess.warp_crops(image, m, pre)[0]
    crop = _photometric(crop, cfg, rng)
    ex = {"image": preprocess.normalize(crop[None], pre)[0], "angle": np.float32(angle),
          "is_face": np.float32(0.0 if negative else 1.0)}

    def keep(v):
        return v is not None and not negative

    lm = np.zeros((NUM_LANDMARKS, 3), np.float32)
    z_mean = None
    if keep(lab["landmarks"]):
        lc = preprocess.to_crop(np.asarray(lab["landmarks"], np.float64)[None], m)[0]
        z_mean = lc[:, 2].mean()
        lc[:, 2] -= z_mean
        lm = lc.astype(np.float32)
    ex.update(landmarks=lm, has_landmarks=np.float32(keep(lab["landmarks"])),
              landmarks_weight=np.float32(sample.landmarks_weight))
    rot = np.eye(3, dtype=np.float32)
    if keep(lab["ypr"]):
        rot = preprocess.rotation_to_crop(pose.euler_to_matrix(np.asarray(lab["ypr"], np.float64))[None], m)[0]
    ex.update(rotation=rot.astype(np.float32), has_pose=np.float32(keep(lab["ypr"])),
              pose_weight=np.float32(sample.pose_weight))
    ex.update(yaw_gt=np.float32(lab["yaw_gt"] if keep(lab["yaw_gt"]) else 0.0),
              has_yaw=np.float32(keep(lab["yaw_gt"])))
    p21 = np.zeros((21, 2), np.float32)
    vis = np.zeros(21, np.float32)
    if keep(lab["pts21"]):
        p = np.asarray(lab["pts21"], np.float64)
        ok = np.isfinite(p).all(axis=1)
        pc = preprocess.to_crop(np.where(ok[:, None], p, 0.0)[None], m)[0]
        inside = ok & (pc >= -0.5).all(axis=1) & (pc <= s - 0.5).all(axis=1)
        p21[inside] = pc[inside]
        vis = inside.astype(np.float32)
    ex.update(pts21=p21, pts21_visible=vis)
    dense = np.zeros((num_dense, 3), np.float32)
    has_dense = keep(lab["dense"]) and len(lab["dense"]) == num_dense
    if keep(lab["dense"]) and len(lab["dense"]) != num_dense:
        raise ValueError(f"{sample.name or sample.source}: {len(lab['dense'])} dense points but the model has "
                         f"num_dense={num_dense}; set [model] num_dense to the teacher's point count")
    if has_dense:
        dc = preprocess.to_crop(np.asarray(lab["dense"], np.float64)[None], m)[0]
        dc[:, 2] -= z_mean if z_mean is not None else dc[:, 2].mean()
        dense = dc.astype(np.float32)
    ex.update(dense=dense, has_dense=np.float32(has_dense), dense_weight=np.float32(sample.dense_weight))
    return ex


def collate(examples: list[dict]):
    """Stack examples into a batch of torch tensors (keys as :func:`make_example`)."""
    return {k: torch.from_numpy(np.stack([e[k] for e in examples])) for k in examples[0]}
