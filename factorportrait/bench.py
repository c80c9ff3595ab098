"""Stage timings, printed (never asserted in tests: this machine is noisy).

``python -m factorportrait bench`` times each CPU stage of the viewpoint factor at the default
video settings and prints the median and best of several repeats.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .camera import load_preset, plucker_rays, rays_to_rgb, trajectory_figure
from .io import write_video


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def camera_benchmark(
    frames: int, height: int, width: int, repeats: int, preset: str = "orbit"
) -> list[tuple[str, list[float]]]:
    trajectory = load_preset(preset)
    path = trajectory.sample(frames)
    K, c2w = path.cameras(height, width)
    rays = plucker_rays(K, c2w, height, width)
    rgb = rays_to_rgb(rays)
    results = [
        (
            "trajectory sample + cameras",
            _time(lambda: trajectory.sample(frames).cameras(height, width), repeats),
        ),
        ("plucker rays", _time(lambda: plucker_rays(K, c2w, height, width), repeats)),
        ("ray maps -> RGB", _time(lambda: rays_to_rgb(rays), repeats)),
        ("plotly figure", _time(lambda: trajectory_figure(K, c2w, height, width), repeats)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results.append(
            (
                "rays.mp4 encode",
                _time(lambda: write_video(Path(tmp) / "rays.mp4", rgb, 16), max(1, repeats // 2)),
            )
        )
    return results


def print_report(
    results: list[tuple[str, list[float]]], frames: int, height: int, width: int
) -> None:
    print(
        f"viewpoint factor, {frames} frames at {width}x{height}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'stage':32s} {'median s':>10s} {'best s':>10s} {'frames/s':>10s}")
    for name, times in results:
        median = statistics.median(times)
        print(f"{name:32s} {median:10.4f} {min(times):10.4f} {frames / median:10.1f}")
