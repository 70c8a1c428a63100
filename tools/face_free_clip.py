"""A face-free test clip: real photos with the face blanked out (maintainer tool; research data only).

What a camera sees when a person turns away or leaves: hair, shoulders, clothes and background, no face. Every
frame should come back from ``fa-run`` with no face. Never used in training (aflw19k ``val`` crops only)::

    python -m tools.face_free_clip make ../shared/data/aflw19k /work/runs/clips/face_free.mp4
    fa-run --source /work/runs/clips/face_free.mp4 --json face_free.jsonl --headless
    python -m tools.face_free_clip score face_free.jsonl

Recipe: ``--photos`` (70) val crops, each held for ``--frames`` (8) frames, scaled so that the whole crop is
300-420 px high and drifting 2-6 px a frame on a face-free background (``clutter`` / ``noise``, in turn), the
face's tight box (the teacher's 68 points) grown by 0-12 % and filled with one flat colour (the crop's mean,
grey, black or white). 640x480, mp4v, 30 fps. Score: the share of frames with at least one reported face.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from fa3d.training.face_paste import background, load_faces, paste


def blank_face(crop: np.ndarray, tight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``crop`` with the face's tight box, grown by 10-25 %, filled with one flat colour."""
    out = crop.copy()
    c, half = (tight[:2] + tight[2:]) / 2, (tight[2:] - tight[:2]) / 2 * rng.uniform(1.0, 1.12)
    x1, y1 = np.floor(c - half).astype(int)
    x2, y2 = np.ceil(c + half).astype(int)
    colours = (crop.reshape(-1, 3).mean(0), (128, 128, 128), (0, 0, 0), (255, 255, 255))
    out[max(y1, 0):y2, max(x1, 0):x2] = np.asarray(colours[int(rng.integers(len(colours)))], np.uint8)
    return out


def make_clip(data: Path, out: Path, photos: int = 70, frames: int = 8, seed: int = 0,
              size: tuple[int, int] = (640, 480)) -> int:
    faces = load_faces(data, "val")
    rng = np.random.default_rng(seed)
    w, h = size
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    if not writer.isOpened():
        raise OSError(f"{out}: OpenCV cannot write this video")
    n = 0
    try:
        for j, i in enumerate(rng.choice(len(faces), photos, replace=False)):
            crop, tight = faces.image(int(i)), faces.tight(int(i))
            crop = blank_face(crop, tight, rng)
            bg = background(("clutter", "noise")[j % 2], rng, w, h)
            crop_px = rng.uniform(300, 420)
            face_w = crop_px * (tight[2] - tight[0]) / crop.shape[1]
            centre = np.array([rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.55) * h])
            a = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(2, 6) * np.array([np.cos(a), np.sin(a)])
            for f in range(frames):
                frame = bg.copy()
                paste(frame, crop, tight, face_w, tuple(centre + f * step))
                writer.write(frame)
                n += 1
    finally:
        writer.release()
    return n


def score(jsonl: Path) -> dict:
    """Frames with at least one reported face, from fa-run's JSON lines."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    with_face = sum(1 for r in records if r.get("faces"))
    return {"frames": len(records), "frames_with_a_face": with_face,
            "face_rate": with_face / len(records) if records else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.face_free_clip", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write the clip")
    m.add_argument("data", type=Path, help="the aflw19k folder")
    m.add_argument("out", type=Path, help="the clip to write (.mp4), outside the repository")
    m.add_argument("--photos", type=int, default=70)
    m.add_argument("--frames", type=int, default=8)
    m.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score", help="the share of frames where fa-run reported a face")
    s.add_argument("jsonl", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "make":
        print(f"{args.out}: {make_clip(args.data, args.out, args.photos, args.frames, args.seed)} frames")
    else:
        print(json.dumps(score(args.jsonl)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
