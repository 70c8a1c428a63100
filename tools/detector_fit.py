"""Measure the BlazeFace box -> tight 68-landmark box mapping (``BLAZE_TO_TIGHT``) on aflw19k faces.

    python -m tools.detector_fit ../shared/data/aflw19k [--split train] [--n 2000]

Each crop is pasted (:mod:`tools.face_paste`) onto a 320x320 clutter background with a random
tight-box width of 60-160 px at a random position, the detector (``mapping=None``: its own boxes) runs
over the frame, the detection overlapping the pasted face's tight box best (IoU >= 0.2) is paired with
it, and :meth:`fa3d.runtime.boxes.BoxMapping.fit` (medians) gives the mapping. Also prints the p10-p90
spread, the median IoU before/after mapping, and the mapping per yaw bin. Development only: reads
research data, writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from fa3d.runtime.boxes import BoxMapping
from fa3d.runtime.boxes import iou_matrix

from tools.face_paste import YAW_BINS, apply_affine, background, load_faces, paste, yaw_bin


def pairs(faces, idx, rng, detector, size: int = 320):
    """Detector boxes, tight boxes and yaw of the detected faces among ``idx``."""
    det_b, tight_b, yaws = [], [], []
    for i in idx:
        canvas = background("clutter", rng, size, size)
        fw = rng.uniform(60, 160)
        c = rng.uniform(fw, size - fw, 2)
        m = paste(canvas, faces.image(int(i)), faces.tight(int(i)), fw, (c[0], c[1]))
        lm = apply_affine(m, faces.lm68[i])
        tb = np.r_[lm.min(0), lm.max(0)]
        d = detector.detect_raw(canvas)
        if len(d) == 0:
            continue
        iou = iou_matrix(tb, d.boxes)[0]
        j = int(np.argmax(iou))
        if iou[j] >= 0.2:
            det_b.append(d.boxes[j])
            tight_b.append(tb)
            yaws.append(faces.yaw[i])
    return np.array(det_b), np.array(tight_b), np.array(yaws)


def spread(d: np.ndarray, t: np.ndarray) -> dict:
    w, h = d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]
    q = lambda a: [round(float(np.percentile(a, 10)), 3), round(float(np.percentile(a, 90)), 3)]  # noqa: E731
    return {"dx_p10_p90": q(((t[:, 0] + t[:, 2]) - (d[:, 0] + d[:, 2])) / 2 / w),
            "dy_p10_p90": q(((t[:, 1] + t[:, 3]) - (d[:, 1] + d[:, 3])) / 2 / h),
            "sw_p10_p90": q((t[:, 2] - t[:, 0]) / w), "sh_p10_p90": q((t[:, 3] - t[:, 1]) / h)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.detector_fit", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="the aflw19k folder (images/, labels.npz, teacher_3ddfa_v2_mb05_tta.npz)")
    p.add_argument("--split", default="train", help="aflw19k split to measure on")
    p.add_argument("--n", type=int, default=2000, help="number of random crops")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from fa3d.runtime.detectors.blazeface_detector import BlazeFaceDetector

    faces = load_faces(args.data, args.split)
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(faces), min(args.n, len(faces)), replace=False)
    d, t, yaw = pairs(faces, idx, rng, BlazeFaceDetector(mapping=None))
    fit = BoxMapping.fit(d, t)
    out = {"crops": len(idx), "paired": len(d), "mapping": {k: round(v, 3) for k, v in vars(fit).items()},
           **spread(d, t),
           "median_iou_raw": round(float(np.median(np.diag(iou_matrix(d, t)))), 3),
           "median_iou_mapped": round(float(np.median(np.diag(iou_matrix(fit.apply(d), t)))), 3),
           "p10_iou_mapped": round(float(np.percentile(np.diag(iou_matrix(fit.apply(d), t)), 10)), 3),
           "per_yaw_bin": {}}
    bins = np.array([yaw_bin(y) for y in yaw])
    for b, (lo, hi) in enumerate(YAW_BINS):
        sel = bins == b
        if sel.sum() >= 10:
            f = BoxMapping.fit(d[sel], t[sel])
            out["per_yaw_bin"][f"{lo}-{hi}"] = {"n": int(sel.sum()), **{k: round(v, 3) for k, v in vars(f).items()}}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
