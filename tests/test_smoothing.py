"""Zero-lag One Euro smoothing: removes jitter, follows motion without delay."""

import numpy as np

from factorportrait.tracking import smooth_zero_lag
from factorportrait.tracking.smoothing import one_euro

FPS = 30.0


def test_removes_jitter_of_a_still_signal():
    rng = np.random.default_rng(0)
    times = np.arange(600) / FPS
    noisy = 5.0 + rng.normal(0, 0.5, size=(600, 8))
    smooth = smooth_zero_lag(noisy, times)
    assert noisy.std(0).mean() / smooth.std(0).mean() > 3.0
    assert abs(smooth.mean() - 5.0) < 0.05  # no bias


def test_follows_a_ramp_without_lag():
    times = np.arange(90) / FPS
    ramp = 40.0 * times[:, None]  # 40 units per second
    smooth = smooth_zero_lag(ramp, times)
    middle = slice(15, 75)
    assert np.abs(smooth[middle] - ramp[middle]).max() < 0.2 * 40 / FPS  # < a fifth of a frame
    # The one-way filter does lag: the two-way version is what removes it.
    assert (
        np.abs(one_euro(ramp, times)[middle] - ramp[middle]).max() > 0.5 * 40 / FPS
    )  # half a frame and more


def test_step_is_not_delayed():
    times = np.arange(60) / FPS
    step = np.where(times >= 1.0, 10.0, 0.0)[:, None]
    smooth = smooth_zero_lag(step, times)[:, 0]
    crossing = np.flatnonzero(smooth >= 5.0)[0]
    assert abs(crossing - 30) <= 1


def test_variable_frame_times():
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.01, 0.06, size=80))
    signal = np.sin(times)[:, None]
    noisy = signal + rng.normal(0, 0.05, size=signal.shape)
    smooth = smooth_zero_lag(noisy, times)
    assert np.abs(smooth - signal).mean() < np.abs(noisy - signal).mean()
