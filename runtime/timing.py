"""Timing statistics: the one implementation of "how long does this take" for every benchmark in fa3d.

``time_calls`` times a callable after warm-up; ``summarize_ms`` turns samples into the median/p10/p90/mean
figures every report prints; ``interleaved`` times several callables in alternating rounds, so that a noisy,
shared machine slows them alike and their *ratio* stays meaningful (absolute milliseconds from different
runs are not comparable).
"""

from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np


def time_calls(fn: Callable[[], object], warmup: int, iters: int) -> np.ndarray:
    """Seconds per call of ``fn()`` over ``iters`` timed calls after ``warmup`` untimed ones."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(max(0, warmup)):
        fn()
    t = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return t


def summarize_ms(ms: np.ndarray | list[float]) -> dict[str, float]:
    """Median, p10, p90 and mean of latency samples given in milliseconds, and their count."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timing samples")
    return {"median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
            "p90_ms": float(np.percentile(a, 90)), "mean_ms": float(a.mean()), "runs": int(a.size)}


def interleaved(fns: Mapping[str, Callable[[], object]], rounds: int, calls_per_round: int = 10,
                warmup: int = 5) -> dict[str, np.ndarray]:
    """Milliseconds per call of each callable, timed in ``rounds`` alternating rounds.

    Each round runs every callable ``calls_per_round`` times (the order rotates each round); the result per
    callable holds one sample per call. Use ratios of medians between callables of the same run.
    """
    if rounds < 1 or calls_per_round < 1:
        raise ValueError("rounds and calls_per_round must be >= 1")
    names = list(fns)
    for name in names:
        for _ in range(max(0, warmup)):
            fns[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            samples[name].extend((time_calls(fns[name], 0, calls_per_round) * 1e3).tolist())
    return {n: np.asarray(v) for n, v in samples.items()}
