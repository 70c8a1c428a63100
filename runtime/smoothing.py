"""Temporal smoothing with the One Euro filter (Casiez, Roussel and Vogel, CHI 2012). Off by default.

The filter is a first-order low-pass whose cut-off rises with speed: ``cutoff = min_cutoff + beta * |dx/dt|``.
Lower ``min_cutoff`` (Hz) removes more jitter when the face is still; higher ``beta`` removes more lag
when it moves. Units: landmarks in pixels (so ``beta`` is per pixel/second), angles in degrees.
The defaults suit 640x480 video at 15-60 fps: ``min_cutoff=1.0``, ``beta=0.01``, ``d_cutoff=1.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroOptions:
    enabled: bool = False
    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        values = (self.min_cutoff, self.d_cutoff, self.beta)
        if (not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
                or self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0):
            raise ValueError("One Euro options need finite min_cutoff > 0, d_cutoff > 0 and beta >= 0, got "
                             f"{self.min_cutoff}, {self.d_cutoff}, {self.beta}")


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters arrays of a fixed shape element-wise; call with increasing timestamps in seconds."""

    def __init__(self, options: OneEuroOptions) -> None:
        self.options = options
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # same or older timestamp: nothing new to filter with
            return self._x.copy()
        o = self.options
        dx = (x - self._x) / dt
        a_d = _alpha(o.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = _alpha(o.min_cutoff + o.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()
