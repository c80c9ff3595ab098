"""Temporal smoothing of tracked signals: a zero-lag One Euro filter.

The One Euro filter (Casiez et al., CHI 2012) is a low-pass whose cutoff rises with the signal's
speed: still heads are smoothed hard (no jitter), fast moves pass through (little lag). We run
offline on whole clips, so we filter forwards and backwards and average: the two passes lag in
opposite directions and the lag cancels. Written here because the PyPI implementations are
scalar, online-only and unmaintained; this one is vectorised over any number of channels and
takes real (variable) frame times.
"""

from __future__ import annotations

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(
    values: np.ndarray,
    times: np.ndarray,
    *,
    min_cutoff: float = 1.0,
    beta: float = 0.05,
    derivative_cutoff: float = 1.0,
) -> np.ndarray:
    """One forward pass over values (N, ...) at times (N,) seconds."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    out[0] = values[0]
    derivative = np.zeros_like(values[0])
    for i in range(1, len(values)):
        dt = max(float(times[i] - times[i - 1]), 1e-4)
        raw_derivative = (values[i] - out[i - 1]) / dt
        a_d = _alpha(derivative_cutoff, dt)
        derivative = a_d * raw_derivative + (1 - a_d) * derivative
        cutoff = min_cutoff + beta * np.abs(derivative)
        a = _alpha(cutoff, dt)
        out[i] = a * values[i] + (1 - a) * out[i - 1]
    return out


def smooth_zero_lag(values: np.ndarray, times: np.ndarray, **params) -> np.ndarray:
    """Forward-backward One Euro: no net lag, jitter removed. values (N, ...), times (N,)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 3:
        return values.copy()
    times = np.asarray(times, dtype=np.float64)
    forward = one_euro(values, times, **params)
    backward = one_euro(values[::-1], times[-1] - times[::-1], **params)[::-1]
    return 0.5 * (forward + backward)
