"""Measure face detectors side by side on aflw19k val faces pasted into frames (development only).

    python -m tools.detector_eval ../shared/data/aflw19k --out runs/detector_eval.json

For each frame size (640x480, 1280x720, 1920x1080) and tight-box width (40, 80, 160, 320 px) the same
``--per-bin`` faces of each yaw bin (0-30, 30-60, 60-90 degrees of AFLW yaw) are pasted one per frame at a
random position on a face-free background (:mod:`tools.face_paste`: clutter, smooth noise or a
shuffled mosaic of crop blocks, in turn). A face counts as found when a detection's tight box overlaps the
tight box of the teacher's 68 points with IoU >= 0.4. False positives per frame are counted on
``--negatives`` face-free frames of each size (the three kinds in turn). Cost: milliseconds per ``detect``
call (the whole frame, as for a single image), the detectors called alternately on the same frames, medians.
Prints a Markdown table; ``--out`` also writes the figures as JSON. Reads research data, writes no image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fa3d.runtime.boxes import iou_matrix

from tools.face_paste import BACKGROUNDS, YAW_BINS, apply_affine, background, load_faces, paste, yaw_bin

SIZES = ((640, 480), (1280, 720), (1920, 1080))
WIDTHS = (40, 80, 160, 320)


def pick_faces(faces, per_bin: int, rng) -> np.ndarray:
    bins = np.array([yaw_bin(y) for y in faces.yaw])
    return np.concatenate([rng.choice(np.flatnonzero(bins == b), per_bin, replace=False)
                           for b in range(len(YAW_BINS))])


def face_frame(faces, i: int, size, width: float, rng, kind: str):
    w, h = size
    canvas = background(kind, rng, w, h, faces)
    tb = faces.tight(i)
    k = width / (tb[2] - tb[0])
    hh = (tb[3] - tb[1]) * k
    cx = rng.uniform(width / 2, w - width / 2) if w > width else w / 2
    cy = rng.uniform(hh / 2, h - hh / 2) if h > hh else h / 2
    m = paste(canvas, faces.image(i), tb, width, (cx, cy))
    lm = apply_affine(m, faces.lm68[i])
    return canvas, np.r_[lm.min(0), lm.max(0)]


def _timed(det, frame):
    t0 = time.perf_counter()
    d = det.detect(frame)
    return np.asarray(d.boxes, np.float64).reshape(-1, 4), time.perf_counter() - t0


def evaluate(faces, detectors: dict, per_bin: int, negatives: int, seed: int = 0,
             sizes=SIZES, widths=WIDTHS) -> dict:
    rng = np.random.default_rng(seed)
    idx = pick_faces(faces, per_bin, rng)
    res: dict = {name: {"recall": {}, "fp_per_frame": {}, "ms_per_frame": {}} for name in detectors}
    for size in sizes:
        key = f"{size[0]}x{size[1]}"
        times = {n: [] for n in detectors}
        for width in widths:
            hits = {n: np.zeros(len(YAW_BINS)) for n in detectors}
            counts = np.zeros(len(YAW_BINS))
            for j, i in enumerate(tqdm(idx, desc=f"{key} face {width}px", leave=False)):
                frame, truth = face_frame(faces, int(i), size, width, rng, BACKGROUNDS[j % 3])
                b = yaw_bin(faces.yaw[i])
                counts[b] += 1
                order = list(detectors) if j % 2 == 0 else list(detectors)[::-1]  # interleaved
                for name in order:
                    boxes, dt = _timed(detectors[name], frame)
                    times[name].append(dt)
                    hits[name][b] += len(boxes) > 0 and iou_matrix(truth, boxes).max() >= 0.4
            for n in detectors:
                res[n]["recall"].setdefault(key, {})[str(width)] = [round(float(v), 3) for v in hits[n] / counts]
        fps = {n: {k: [] for k in BACKGROUNDS} for n in detectors}
        for j in tqdm(range(negatives), desc=f"{key} face-free", leave=False):
            kind = BACKGROUNDS[j % 3]
            frame = background(kind, rng, size[0], size[1], faces)
            for name in detectors:
                boxes, dt = _timed(detectors[name], frame)
                times[name].append(dt)
                fps[name][kind].append(len(boxes))
        for n in detectors:
            res[n]["fp_per_frame"][key] = round(float(np.mean(sum(fps[n].values(), []))), 3)
            res[n].setdefault("fp_per_frame_by_background", {})[key] = {
                k: round(float(np.mean(v)), 3) for k, v in fps[n].items()}
            res[n]["ms_per_frame"][key] = round(float(np.median(times[n]) * 1000), 1)
    res["setup"] = {"faces_per_yaw_bin": per_bin, "negatives_per_size": negatives, "seed": seed,
                    "widths": list(widths), "sizes": [f"{w}x{h}" for w, h in sizes], "iou": 0.4}
    return res


def markdown(res: dict) -> str:
    names = [n for n in res if n != "setup"]
    lines = ["| detector | frame | face px | recall 0-30 / 30-60 / 60-90 | FP per face-free frame | ms per frame |",
             "|---|---|---|---|---|---|"]
    for n in names:
        for key, per_w in res[n]["recall"].items():
            for width, r in per_w.items():
                lines.append(f"| {n} | {key} | {width} | {' / '.join(f'{v * 100:.0f}' for v in r)} | "
                             f"{res[n]['fp_per_frame'][key]:.2f} | {res[n]['ms_per_frame'][key]:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.detector_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="the aflw19k folder")
    p.add_argument("--per-bin", type=int, default=40, help="val faces per yaw bin")
    p.add_argument("--negatives", type=int, default=30, help="face-free frames per frame size")
    p.add_argument("--detectors", default="blazeface,haar", help="comma-separated make_detector specs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    from fa3d.runtime.detectors import make_detector

    faces = load_faces(args.data, "val")
    dets = {name: make_detector(name) for name in args.detectors.split(",")}
    res = evaluate(faces, dets, args.per_bin, args.negatives, args.seed)
    print(markdown(res))
    if args.out:
        from fa3d.runtime.atomic import atomic_path

        with atomic_path(Path(args.out)) as tmp:
            Path(tmp).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
