"""The dense head's fixed geometry: a template of N points and the linear map from 68 keypoints to them.

Design (documented choice for the paper's "dense geometric landmarks by knowledge distillation"):
``dense = W @ landmarks + residual``. ``W`` (N, 68) is the 3D thin-plate spline (kernel ``phi(r) = r``)
that maps the 68-point mean shape onto the 68 predicted keypoints, evaluated at the template points.
It is linear in the keypoints and reproduces any similarity transform exactly (``W @ (s R M + t) =
s R T + t``), so the predicted keypoints drive the dense points; the network adds a small learnt
residual for what the keypoints cannot explain. The teacher's points are the distillation targets.

Templates live in the model frame of :func:`fa3d.runtime.schema.mean_shape` (x right, y up, z towards
the viewer, centred, unit RMS radius). Without a template (e.g. before teacher labels exist) the default
is deterministic: the 68 mean-shape points followed by points on the triangles formed by each keypoint
and its two nearest neighbours, with barycentric weights from a seeded generator.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from fa3d.runtime import pose
from fa3d.runtime.atomic import atomic_path
from fa3d.runtime.schema import NUM_LANDMARKS, mean_shape


def default_template(num_points: int, seed: int = 0) -> np.ndarray:
    """A deterministic (N, 3) float32 template on the 68-point mean-shape surface."""
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    m = mean_shape().astype(np.float64)
    d = np.linalg.norm(m[:, None] - m[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nn2 = np.argsort(d, axis=1)[:, :2]
    rng = np.random.default_rng(seed)
    extra = max(num_points - NUM_LANDMARKS, 0)
    idx = rng.integers(0, NUM_LANDMARKS, size=extra)
    bary = rng.dirichlet((2.0, 2.0, 2.0), size=extra)
    tri = m[idx] * bary[:, :1] + m[nn2[idx, 0]] * bary[:, 1:2] + m[nn2[idx, 1]] * bary[:, 2:3]
    pts = np.concatenate([m, tri])[:num_points]
    return pts.astype(np.float32)


def tps_weights(template: np.ndarray, anchors: np.ndarray | None = None, regularisation: float = 1e-3) -> np.ndarray:
    """(N, 68) float32 weights ``W`` with ``W @ keypoints`` = the TPS warp of ``template`` from ``anchors``
    (default: the mean shape) to the keypoints."""
    t = np.asarray(template, dtype=np.float64)
    m = mean_shape().astype(np.float64) if anchors is None else np.asarray(anchors, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != 3 or not np.isfinite(t).all():
        raise ValueError(f"dense template must be a finite (N, 3) array, got shape {t.shape}")
    if m.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"anchors must be (68, 3), got {m.shape}")
    k = np.linalg.norm(m[:, None] - m[None], axis=-1) + regularisation * np.eye(NUM_LANDMARKS)
    p = np.concatenate([np.ones((NUM_LANDMARKS, 1)), m], axis=1)
    a = np.zeros((NUM_LANDMARKS + 4, NUM_LANDMARKS + 4))
    a[:NUM_LANDMARKS, :NUM_LANDMARKS] = k
    a[:NUM_LANDMARKS, NUM_LANDMARKS:] = p
    a[NUM_LANDMARKS:, :NUM_LANDMARKS] = p.T
    inv = np.linalg.inv(a)[:, :NUM_LANDMARKS]
    basis = np.concatenate([np.linalg.norm(t[:, None] - m[None], axis=-1), np.ones((len(t), 1)), t], axis=1)
    return (basis @ inv).astype(np.float32)


def mirror_permutation(template: np.ndarray) -> np.ndarray:
    """For a horizontal flip: dense point i of the flipped face is point ``perm[i]`` of the original.

    Taken as the template point nearest to each point's mirror image ``(-x, y, z)``; exact for a
    symmetric template, the nearest approximation otherwise.
    """
    t = np.asarray(template, dtype=np.float64)
    mirrored = t * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(mirrored[:, None] - t[None], axis=-1)
    return np.argmin(d, axis=1).astype(np.int64)


def template_from_labels(landmarks: np.ndarray, dense: np.ndarray, max_abs_yaw: float = 30.0,
                         ypr: np.ndarray | None = None, limit: int = 4000) -> np.ndarray:
    """A template (N, 3) from a teacher's labels: each face's dense points brought into the model frame.

    ``landmarks`` (B, 68, 3) and ``dense`` (B, N, 3) are image points of the same faces (e.g. an fa-label
    ``labels.npz``). For each face the similarity mean shape -> landmarks is fitted
    (:func:`fa3d.runtime.pose.fit_similarity`) and inverted on its dense points; the template is the
    per-point median over up to ``limit`` faces with |yaw| <= ``max_abs_yaw`` (when ``ypr`` is given).
    """
    lm = np.asarray(landmarks, np.float64)
    de = np.asarray(dense, np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (NUM_LANDMARKS, 3) or de.ndim != 3 or de.shape[2] != 3 or len(de) != len(lm):
        raise ValueError(f"expected landmarks (B, 68, 3) and dense (B, N, 3) of the same faces, got {lm.shape} "
                         f"and {de.shape}")
    keep = np.arange(len(lm))
    if ypr is not None:
        keep = keep[np.abs(np.asarray(ypr)[:, 0]) <= max_abs_yaw]
    keep = keep[:limit]
    if len(keep) == 0:
        raise ValueError(f"no face with |yaw| <= {max_abs_yaw} deg to build a template from")
    m = mean_shape().astype(np.float64)
    frames = []
    for i in keep:
        r, s, t = pose.fit_similarity(m, pose.image_to_view(lm[i]))
        frames.append((pose.image_to_view(de[i]) - t) @ r / s)
    return np.median(np.stack(frames), axis=0).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """``python -m fa3d.training.dense_template LABELS.npz OUT.npy``: a template from fa-label output."""
    ap = argparse.ArgumentParser(prog="python -m fa3d.training.dense_template",
                                 description="Build the dense head's template (N, 3) from an fa-label labels.npz.")
    ap.add_argument("labels", help="fa-label output labels.npz (lm68, dense, ypr, confidence)")
    ap.add_argument("out", help="output .npy, e.g. runs/mediapipe_template.npy ([model] dense_template)")
    ap.add_argument("--names-from", help="only faces whose image name is in this split: PATH.npz:split "
                    "(e.g. ../shared/data/aflw19k/labels.npz:train)")
    ap.add_argument("--min-confidence", type=float, default=0.5, help="skip faces below this teacher confidence")
    ap.add_argument("--max-abs-yaw", type=float, default=30.0, help="use near-frontal faces only (degrees)")
    ap.add_argument("--limit", type=int, default=4000, help="at most this many faces")
    a = ap.parse_args(argv)
    try:
        with np.load(a.labels, allow_pickle=False) as z:
            names, lm, dense, ypr, conf = (z[k] for k in ("names", "lm68", "dense", "ypr", "confidence"))
        keep = conf >= a.min_confidence
        if a.names_from:
            path, _, split = a.names_from.rpartition(":")
            if not path or not split:
                raise ValueError(f"--names-from {a.names_from!r}: expected PATH.npz:split")
            with np.load(path, allow_pickle=False) as z:
                allowed = set(z["names"][z["split"] == split].tolist())
            keep &= np.array([n in allowed for n in names.tolist()])
        tmpl = template_from_labels(lm[keep], dense[keep], a.max_abs_yaw, ypr[keep], a.limit)
    except (OSError, KeyError, ValueError) as e:
        print(f"dense_template: error: {e}", file=sys.stderr)
        return 2
    with atomic_path(a.out) as tmp:
        np.save(tmp, tmpl)
    print(f"wrote {a.out}: template {tmpl.shape}, median over up to {a.limit} of {int(keep.sum())} labelled faces "
          f"with |yaw| <= {a.max_abs_yaw:g} deg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
