"""Acceptance clips from aflw19k val faces, and their scoring from fa-run's JSON lines (development only).

Make (clips go OUTSIDE the repository: they hold research-only faces)::

    python -m tools.face_clips make ../shared/data/aflw19k /work/runs/clips/clip720.mp4 \\
        --size 1280x720 --face 150 --max-yaw 75
    python -m tools.face_clips make ../shared/data/aflw19k /work/runs/clips/clip480.mp4 \\
        --size 640x480 --face 200 --max-yaw 60

Recipe (issue #13): ``--faces`` (40) val faces with ``|AFLW yaw| < --max-yaw``, each held for ``--frames``
(8) frames while drifting: a tight-box width of ``--face`` px +-15 %, a random start, a drift of 2-6 px per
frame in a random direction and +-1 % scale per frame, on a new face-free background per face
(:mod:`tools.face_paste`, the ``--backgrounds`` kinds in turn; a cut between faces). The ``mosaic``
kind (shuffled blocks of face crops) is a stress test: the detector finds false faces in it. Written as mp4v at 30 fps, with ``<clip>.npz``:
per frame the teacher's 68 points and the visible AFLW 21 points mapped into the frame, and the yaw.

Score::

    fa-run --source clip720.mp4 --json clip720.jsonl --headless
    python -m tools.face_clips score /work/runs/clips/clip720.mp4 clip720.jsonl

A frame's face is *found* when a reported face's box overlaps the tight box of the teacher's 68 points by
IoU >= 0.4 (the best such face is scored). NME: the mean 68-point distance to the teacher's points divided
by sqrt(w * h) of that tight box (also reported: the AFLW protocol, the visible 21 points against AFLW's own
labels with the same normaliser). Frames without a found face count as failures in every percentage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from tools.face_paste import BACKGROUNDS, apply_affine, background, load_faces, paste

# AFLW 21 -> iBUG 68 correspondences (fa3d.training.data docs): eye corners, nose tip, mouth corners, chin
AFLW21_TO_68 = {6: 36, 8: 39, 9: 42, 11: 45, 14: 30, 17: 48, 19: 54, 20: 8}


def make_clip(faces, out: Path, size: tuple[int, int], face_px: float, max_yaw: float, n_faces: int = 40,
              frames_per_face: int = 8, seed: int = 0, backgrounds: tuple[str, ...] = BACKGROUNDS) -> dict:
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(np.abs(faces.yaw) < max_yaw)
    idx = rng.choice(pool, n_faces, replace=False)
    w, h = size
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    if not writer.isOpened():
        raise OSError(f"{out}: OpenCV cannot write this video")
    lm68, pts21, vis21, yaw = [], [], [], []
    for j, i in enumerate(idx):
        i = int(i)
        crop, tb = faces.image(i), faces.tight(i)
        bg = background(backgrounds[j % len(backgrounds)], rng, w, h, faces)
        width = face_px * rng.uniform(0.85, 1.15)
        hh = width * (tb[3] - tb[1]) / (tb[2] - tb[0])
        c = np.array([rng.uniform(width * 0.7, w - width * 0.7), rng.uniform(hh * 0.7, h - hh * 0.7)])
        ang = rng.uniform(0, 2 * np.pi)
        v = rng.uniform(2, 6) * np.array([np.cos(ang), np.sin(ang)])
        grow = rng.uniform(-0.01, 0.01)
        for _ in range(frames_per_face):
            frame = bg.copy()
            m = paste(frame, crop, tb, width, (c[0], c[1]))
            writer.write(frame)
            lm68.append(apply_affine(m, faces.lm68[i]))
            pts21.append(apply_affine(m, faces.pts21[i]))
            vis21.append(faces.visible[i])
            yaw.append(faces.yaw[i])
            c = np.clip(c + v, [width / 2, hh / 2], [w - width / 2, h - hh / 2])
            width *= 1 + grow
    writer.release()
    np.savez(out.with_suffix(".npz"), lm68=np.array(lm68, np.float32), pts21=np.array(pts21, np.float32),
             visible=np.array(vis21), yaw=np.array(yaw, np.float32), names=faces.names[idx])
    return {"clip": str(out), "frames": len(lm68), "size": f"{w}x{h}", "faces": n_faces}


def _best_face(faces: list[dict], truth_box: np.ndarray):
    from fa3d.runtime.boxes import iou_matrix

    if not faces:
        return None
    boxes = np.array([f["box"] for f in faces], np.float64)
    iou = iou_matrix(truth_box, boxes)[0]
    j = int(np.argmax(iou))
    return faces[j] if iou[j] >= 0.4 else None


def score(clip: Path, jsonl: Path, threshold: float = 0.07) -> dict:
    lab = np.load(clip.with_suffix(".npz"))
    recs = {r["frame"]: r for r in (json.loads(line) for line in jsonl.read_text().splitlines() if line.strip())}
    n = len(lab["lm68"])
    found, nme68, nme21 = np.zeros(n, bool), np.full(n, np.inf), np.full(n, np.inf)
    for k in range(n):
        t = lab["lm68"][k].astype(np.float64)
        tb = np.r_[t.min(0), t.max(0)]
        norm = np.sqrt((tb[2] - tb[0]) * (tb[3] - tb[1]))
        f = _best_face(recs.get(k, {}).get("faces", []), tb)
        if f is None:
            continue
        found[k] = True
        p = np.asarray(f["landmarks"], np.float64)[:, :2]
        nme68[k] = np.linalg.norm(p - t, axis=1).mean() / norm
        vis = lab["visible"][k]
        pairs = [(a, b) for a, b in AFLW21_TO_68.items() if vis[a]]
        if pairs:
            a, b = zip(*pairs)
            nme21[k] = np.linalg.norm(p[list(b)] - lab["pts21"][k][list(a)], axis=1).mean() / norm
    fin = np.isfinite(nme68)
    return {"frames": n, "found_pct": round(100 * found.mean(), 1),
            "within_7pct_nme68_pct": round(100 * float((nme68 <= threshold).mean()), 1),
            "within_7pct_aflw8_pct": round(100 * float((nme21 <= threshold).mean()), 1),
            "median_nme68_found_pct": round(100 * float(np.median(nme68[fin])), 2) if fin.any() else None,
            "records": len(recs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.face_clips", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a clip and its labels (.npz beside it)")
    m.add_argument("data", help="the aflw19k folder")
    m.add_argument("out", help="the .mp4 to write (outside the repository)")
    m.add_argument("--size", default="1280x720", help="frame size WxH")
    m.add_argument("--face", type=float, default=150, help="tight-box width in pixels (+-15 %%)")
    m.add_argument("--max-yaw", type=float, default=75, help="faces with |yaw| below this, degrees")
    m.add_argument("--faces", type=int, default=40)
    m.add_argument("--frames", type=int, default=8, help="frames per face")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--backgrounds", default=",".join(BACKGROUNDS),
                   help="background kinds, used in turn (clutter, noise, mosaic: see tools.face_paste)")
    s = sub.add_parser("score", help="score fa-run's JSON lines on a clip")
    s.add_argument("clip")
    s.add_argument("jsonl")
    args = p.parse_args(argv)
    if args.cmd == "make":
        w, h = (int(v) for v in args.size.lower().split("x"))
        out = make_clip(load_faces(args.data, "val"), Path(args.out), (w, h), args.face, args.max_yaw,
                        args.faces, args.frames, args.seed, tuple(args.backgrounds.split(",")))
    else:
        out = score(Path(args.clip), Path(args.jsonl))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
