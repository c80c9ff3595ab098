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


def preview_benchmark(
    portrait: Path,
    driving: Path,
    frames: int,
    height: int,
    width: int,
    repeats: int,
    landmarker: Path | None = None,
) -> list[tuple[str, list[float]]]:
    """Per-stage times of the whole preview (warm tracker, as in the app), plus the
    rasteriser alone and tracking per frame."""
    from .conditioning import ConditioningSettings, build_conditioning, render_head
    from .face_model import load_canonical_face
    from .head_mesh import build_head_template
    from .io.media import read_video
    from .preview import write_preview
    from .tracking import FaceTracker

    settings = ConditioningSettings(mode="all-dynamic", frames=frames, height=height, width=width)
    stages: dict[str, list[float]] = {}
    with FaceTracker(landmarker) as tracker, tempfile.TemporaryDirectory() as tmp:
        build_conditioning(portrait, driving, settings=settings, tracker=tracker)  # warm-up
        for i in range(repeats):
            start = time.perf_counter()
            cond = build_conditioning(portrait, driving, settings=settings, tracker=tracker)
            built = time.perf_counter() - start
            write_preview(cond, Path(tmp) / f"run{i}")
            total = time.perf_counter() - start
            for name, seconds in cond.report["seconds"].items():
                stages.setdefault(name, []).append(seconds)
            stages.setdefault("= conditioning (API call)", []).append(built)
            stages.setdefault("= preview incl. writing files", []).append(total)
        video = read_video(driving, until_s=frames / 16.0)
        clip = video.frames[:frames]
        stages["tracking, per frame"] = _time(
            lambda: tracker.track_frames(clip, video.times[: len(clip)]), repeats
        )
        stages["tracking, per frame"] = [t / len(clip) for t in stages["tracking, per frame"]]
        template = build_head_template(load_canonical_face(str(tracker.model_path)))
        stages["normal maps alone"] = _time(
            lambda: render_head(template, cond.head_pose, cond.K, cond.c2w, height, width), repeats
        )
    return list(stages.items())


def print_report(
    results: list[tuple[str, list[float]]],
    frames: int,
    height: int,
    width: int,
    title: str = "viewpoint factor",
) -> None:
    print(
        f"{title}, {frames} frames at {width}x{height}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'stage':32s} {'median s':>10s} {'best s':>10s} {'frames/s':>10s}")
    for name, times in results:
        median = statistics.median(times)
        rate = "" if "per frame" in name else f"{frames / median:10.1f}"
        print(f"{name:32s} {median:10.4f} {min(times):10.4f} {rate}")
