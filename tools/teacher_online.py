"""Would training on the teacher's own answers for each augmented crop help? (maintainer tool; research data
and the teacher only, never shipped).

Issue #20 lists "the teacher run online on the augmented crops" among the levers. Training now warps the
test-time-augmented (TTA) teacher labels with each crop's augmentation, so its targets are exactly the main
measure's reference (aflw19k val against the TTA teacher's 68 points). Online distillation would train on one
pass of the teacher on the augmented crop instead. This tool measures how far those answers, mapped back to the
crop, are from the TTA labels, on aflw19k val by the teacher's |yaw| bins (NME %, normalised like ``fa-eval``)::

    python -m tools.teacher_online --data ../shared/data/aflw19k --teacher ../shared/teacher/3ddfa_v2_mb05 \\
        [--stride 3] [--seed 0] [--json out.json]

Rows: ``none`` (the crop as it is: one plain pass, which must reproduce ``teacher_3ddfa_v2_mb05.npz``; the tool
checks it), ``small`` (scale +-5 %, shift +-3 % of the crop, rotation +-5 deg) and ``training`` (the geometric
part of the training augmentation: scale +-15 %, shift +-7 %, rotation +-30 deg). Each augmented crop is the
whole 120 px crop warped by a random similarity (zero padding), as the teacher's own pipeline would cut it.

The teacher's pipeline (the README beside its files in ``../shared/teacher/3ddfa_v2_mb05/``): BGR 120x120 input,
``(x - 127.5) / 128``, de-whitened 62 parameters, the 3DMM's 68-point basis, ``x = V[0] - 1``, ``y = 120 - V[1]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fa3d.data.evaluation import protocols as ev
from fa3d.data.evaluation.metrics import nme, yaw_bin_means
from fa3d.runtime import preprocess as pp
from fa3d.runtime.atomic import atomic_write_text
from fa3d.runtime.backends.onnxrt import cpu_session

SIZE = 120
BASIS = {"u_base": (204,), "w_shp_base": (204, 40), "w_exp_base": (204, 10), "param_mean": (62,),
         "param_std": (62,)}
# (scale, shift as a fraction of the crop, rotation in degrees): each drawn uniformly in +-the value
SETTINGS = {"none": (0.0, 0.0, 0.0), "small": (0.05, 0.03, 5.0), "training": (0.15, 0.07, 30.0)}
REPRODUCE_TOL_PX = 1e-3


class TeacherError(ValueError):
    """The teacher's files are missing or not what its README describes."""


@dataclass
class Teacher:
    """3DDFA_V2's MobileNet-V1 x0.5 on 120x120 BGR crops: 68 points (x, y) in crop pixels."""

    session: object
    basis: dict[str, np.ndarray]

    @classmethod
    def load(cls, folder: str | Path) -> "Teacher":
        folder = Path(folder)
        onnx, npz = folder / "mb05_120x120.onnx", folder / "basis68.npz"
        for f in (onnx, npz):
            if not f.is_file():
                raise TeacherError(f"{f} not found: pass --teacher the folder holding mb05_120x120.onnx and "
                                   "basis68.npz (../shared/teacher/3ddfa_v2_mb05)")
        with np.load(npz, allow_pickle=False) as z:
            basis = {}
            for k, shape in BASIS.items():
                if k not in z.files or z[k].shape != shape or not np.issubdtype(z[k].dtype, np.floating):
                    got = f"shape {z[k].shape}, {z[k].dtype}" if k in z.files else "missing"
                    raise TeacherError(f"{npz}: {k} must be a float array of shape {shape} ({got}); "
                                       "the file is not the teacher's 68-point basis")
                basis[k] = z[k].astype(np.float64)
        session = cpu_session(onnx)
        inp, out = session.get_inputs()[0], session.get_outputs()[0]
        if list(inp.shape[1:]) != [3, SIZE, SIZE] or out.shape[-1] != 62:
            raise TeacherError(f"{onnx}: expected input (N, 3, {SIZE}, {SIZE}) and output (N, 62), got "
                               f"{inp.shape} and {out.shape}")
        return cls(session, basis)

    def points(self, crops_bgr: np.ndarray) -> np.ndarray:
        """(N, 120, 120, 3) uint8 BGR -> (N, 68, 2) float64 points in crop pixels (0-based)."""
        if crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (SIZE, SIZE, 3) or crops_bgr.dtype != np.uint8:
            raise ValueError(f"expected (N, {SIZE}, {SIZE}, 3) uint8 BGR crops, got {crops_bgr.shape} "
                             f"{crops_bgr.dtype}")
        x = (crops_bgr.astype(np.float32).transpose(0, 3, 1, 2) - 127.5) / 128.0
        name = self.session.get_inputs()[0].name
        raw = self.session.run(None, {name: x})[0].astype(np.float64)
        b = self.basis
        p = raw * b["param_std"] + b["param_mean"]
        cam = p[:, :12].reshape(-1, 3, 4)
        verts = b["u_base"] + p[:, 12:52] @ b["w_shp_base"].T + p[:, 52:62] @ b["w_exp_base"].T  # (N, 204)
        verts = verts.reshape(-1, 68, 3).transpose(0, 2, 1)  # x0, y0, z0, x1, ...: column-major (3, 68)
        verts = cam[:, :, :3] @ verts + cam[:, :, 3:]
        return np.stack([verts[:, 0] - 1.0, SIZE - verts[:, 1]], -1)


def jitter_matrix(rng: np.random.Generator, scale: float, shift: float, rotation_deg: float) -> np.ndarray:
    """The 2x3 crop -> warped-crop transform of a random crop box: the whole crop's box scaled by 1 +- ``scale``,
    shifted by +- ``shift`` of its side and rotated by +- ``rotation_deg`` (the package's crop jitter and crop
    transform, fa3d.runtime.preprocess)."""
    s = 1.0 + rng.uniform(-scale, scale)
    t = rng.uniform(-shift, shift, 2)
    r = rng.uniform(-rotation_deg, rotation_deg)
    box = pp.jitter_box(np.full(2, (SIZE - 1) / 2), float(SIZE), s, t)
    return pp.crop_transforms(box, SIZE, r)[0]


def map_back(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Points found in the crop warped by ``m`` (2x3), in the unwarped crop's pixels."""
    return pp.to_image(np.asarray(points, np.float64)[None], np.asarray(m)[None])[0]


def measure(data: str | Path, teacher: Teacher, stride: int = 3, seed: int = 0,
            progress: bool = True) -> dict[str, dict[str, float | None]]:
    """{setting: yaw_bin_means of the NME against the TTA labels} over every ``stride``-th aflw19k val crop.
    Raises if the plain pass does not reproduce the plain labels (the pipeline would be wrong)."""
    tta = ev.load_ground_truth("aflw19k-val-teacher-tta", data)
    plain = ev.load_ground_truth("aflw19k-val-teacher", data)
    rows = np.arange(0, len(tta), stride)
    rng = np.random.default_rng(seed)
    found = {k: np.zeros((len(rows), 68, 2)) for k in SETTINGS}
    for j, i in enumerate(tqdm(rows, desc="teacher passes", disable=not progress, unit="crop")):
        img = cv2.imread(str(tta.paths[i]), cv2.IMREAD_COLOR)
        if img is None or img.shape != (SIZE, SIZE, 3):
            raise ValueError(f"{tta.paths[i]}: not a readable {SIZE}x{SIZE} crop")
        for k, (sc, sh, rot) in SETTINGS.items():
            m = jitter_matrix(rng, sc, sh, rot)
            warped = img if k == "none" else cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            found[k][j] = map_back(teacher.points(warped[None])[0], m)
    worst = float(np.abs(found["none"] - plain.lm68[rows, :, :2]).max())
    if worst > REPRODUCE_TOL_PX:
        raise RuntimeError(f"the plain pass is {worst:.3g} px from teacher_3ddfa_v2_mb05.npz (tolerance "
                           f"{REPRODUCE_TOL_PX}): the teacher's pipeline here does not reproduce its labels")
    return {k: yaw_bin_means(nme(v, tta.lm68[rows]), tta.yaw[rows]) for k, v in found.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.teacher_online", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data/aflw19k", help="the aflw19k folder (images/, labels.npz, "
                   "teacher_3ddfa_v2_mb05.npz, teacher_3ddfa_v2_mb05_tta.npz); default %(default)s")
    p.add_argument("--teacher", default="../shared/teacher/3ddfa_v2_mb05",
                   help="the teacher's folder (mb05_120x120.onnx, basis68.npz); default %(default)s")
    p.add_argument("--stride", type=int, default=3, help="every STRIDE-th val crop (1: all 1,908); default 3")
    p.add_argument("--seed", type=int, default=0, help="seed of the random warps; default 0")
    p.add_argument("--json", help="also write the table as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.stride < 1:
        p.error("--stride must be at least 1")
    try:
        teacher = Teacher.load(args.teacher)
        table = measure(args.data, teacher, args.stride, args.seed, progress=not args.no_progress)
    except (TeacherError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"teacher_online: {e}", file=sys.stderr)
        return 2
    print("NME % of the teacher's one pass (mapped back) against the TTA labels, aflw19k val")
    print(f"{'warp':<10}{'0-30':>8}{'30-60':>8}{'60-90':>8}{'balanced':>10}{'all':>8}")
    for k, row in table.items():
        print(f"{k:<10}" + "".join(f"{row[b]:>8.2f}" for b in ("0-30", "30-60", "60-90"))
              + f"{row['balanced']:>10.2f}{row['all']:>8.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": SETTINGS, "stride": args.stride, "seed": args.seed,
                                                 "nme": table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
