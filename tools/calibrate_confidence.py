"""Calibrate a checkpoint's face confidence (Platt scaling folded into its last layer; maintainer tool).

The confidence is ``sigmoid(w . h + b)``. Platt scaling fits ``sigmoid(a z + c)`` on the logits ``z`` of
held-out crops (faces and face-free crops, weighted equally: a 50 % prior), so that the output reads as a
probability; folding it into the layer (``w <- a w``, ``b <- a b + c``) keeps the network, its ONNX export and
the runtime unchanged. Fitted on the aflw19k ``val`` crops of :mod:`tools.confidence_eval` (every other face;
the rest and HELEN test stay for the report)::

    python -m tools.calibrate_confidence RUN/best.pt RUN/best_calibrated.pt --onnx RUN/best.onnx
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from fa3d.runtime.atomic import atomic_path
from fa3d.training.checkpoint import read_checkpoint

from .confidence_eval import NEGATIVE_KINDS, crop_scores


def fit_platt(z_pos: np.ndarray, z_neg: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, c) minimising the balanced binary cross-entropy of ``sigmoid(a z + c)`` (Newton's method)."""
    z = np.concatenate([z_pos, z_neg])
    y = np.concatenate([np.ones(len(z_pos)), np.zeros(len(z_neg))])
    w = np.concatenate([np.full(len(z_pos), 0.5 / len(z_pos)), np.full(len(z_neg), 0.5 / len(z_neg))])
    x = np.stack([z, np.ones_like(z)], 1)
    theta = np.array([1.0, 0.0])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(x @ theta)))
        grad = x.T @ (w * (p - y))
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.calibrate_confidence", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path, help="the calibrated checkpoint to write")
    p.add_argument("--onnx", required=True, help="the checkpoint's ONNX export (the runtime scores the crops)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = p.parse_args(argv)
    scores = crop_scores(args.onnx, args.data, None, part="fit")
    a, c = fit_platt(_logit(scores["face"]), _logit(np.concatenate([scores[k] for k in NEGATIVE_KINDS])))
    ckpt = read_checkpoint(args.checkpoint)
    sd = ckpt["state_dict"]
    w, b = sd["confidence.weight"], sd["confidence.bias"]
    sd["confidence.weight"] = (w.double() * a).to(w.dtype)
    sd["confidence.bias"] = (b.double() * a + c).to(b.dtype)
    ckpt.setdefault("metadata", {})["confidence_calibration"] = {"platt_a": a, "platt_c": c,
                                                                 "fitted_on": "aflw19k val, every other face"}
    with atomic_path(args.out) as tmp:
        torch.save(ckpt, tmp)
    print(json.dumps({"a": a, "c": c, "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
