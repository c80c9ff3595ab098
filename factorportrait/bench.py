"""Stage timings, printed (never asserted in tests: this machine is noisy).

``python -m factorportrait bench`` times every CPU stage (cameras and rays, tracking, the whole
preview through the API and through the web service, the rasteriser at 256/512/1024 and inside
the preview, the tiny pipeline's VAE and denoising step) and, with ``--model``, a transformer
step against plain Wan; prints medians and best of several repeats, and with ``--json`` /
``--markdown`` writes them to files. diffusers loads only for the stages that need it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .config import LATENT
from .io import write_video
from .modes import Mode
from .viewpoint import load_preset, plucker_rays, rays_to_rgb, trajectory_figure

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EXAMPLE_PORTRAIT = ASSETS / "example_portrait.jpg"
EXAMPLE_DRIVING = ASSETS / "example_driving.mp4"

PREVIEW_API = "= conditioning (API call)"
PREVIEW_WITH_FILES = "= preview incl. writing files"
PREVIEW_UI = "= preview in the web service"
NORMALS_IN_PREVIEW = "normals"
GEOMETRY_RENDER = "geometry engine render at {size}"
GEOMETRY_GENERATE = (
    "= geometry Generate in the web service"  # the preview summary's stage: the rasteriser's share
)


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
    rays = plucker_rays(K, c2w, height, width, reference_c2w=c2w[0])
    rgb = rays_to_rgb(rays)
    results = [
        (
            "trajectory sample + cameras",
            _time(lambda: trajectory.sample(frames).cameras(height, width), repeats),
        ),
        (
            "plucker rays",
            _time(lambda: plucker_rays(K, c2w, height, width, reference_c2w=c2w[0]), repeats),
        ),
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
    """Per-stage times of the whole preview (warm tracker, as in the app), and tracking per
    frame."""
    from .conditioning import ConditioningSettings, build_conditioning
    from .conditioning.preview import write_preview
    from .io.media import read_video
    from .tracking import FaceTracker

    settings = ConditioningSettings(
        mode=Mode.ALL_DYNAMIC, frames=frames, height=height, width=width
    )
    stages: dict[str, list[float]] = {}
    with FaceTracker(landmarker) as tracker, tempfile.TemporaryDirectory() as tmp:
        build_conditioning(portrait, driving, settings=settings, tracker=tracker)  # warm-up
        for i in range(repeats):
            start = time.perf_counter()
            cond = build_conditioning(portrait, driving, settings=settings, tracker=tracker)
            built = time.perf_counter() - start
            files = write_preview(cond, Path(tmp) / f"run{i}")
            total = time.perf_counter() - start
            # Every stage, the writer's too (the normals are rendered there, straight to colours).
            summary = json.loads(files["summary.json"].read_text())
            for name, seconds in summary["seconds"].items():
                stages.setdefault(name, []).append(seconds)
            stages.setdefault(PREVIEW_API, []).append(built)
            stages.setdefault(PREVIEW_WITH_FILES, []).append(total)
        video = read_video(driving, until_s=frames / 16.0 + 1.0)
        clip = video.frames[:frames]
        stages["tracking, per frame"] = _time(
            lambda: tracker.track_frames(clip, video.times[: len(clip)]), repeats
        )
        stages["tracking, per frame"] = [t / len(clip) for t in stages["tracking, per frame"]]
    return list(stages.items())


def preview_ui_benchmark(
    portrait: Path,
    driving: Path,
    frames: int,
    height: int,
    width: int,
    repeats: int,
    landmarker: Path | None = None,
) -> list[tuple[str, list[float]]]:
    """A preview request through the web service (``ui.service.Service``, what the Preview
    button runs): the same uploads once untimed, so whatever the service keeps per upload is
    in place, then ``repeats`` timed requests."""
    import shutil

    from .conditioning import ConditioningSettings
    from .ui.service import Service

    settings = ConditioningSettings(
        mode=Mode.ALL_DYNAMIC, frames=frames, height=height, width=width
    )
    service = Service(landmarker=str(landmarker) if landmarker else None)
    try:

        def request():
            service.preview(str(portrait), str(driving), settings, engine="factorportrait")

        request()
        return [(PREVIEW_UI, _time(request, repeats))]
    finally:
        shutil.rmtree(service.output_root, ignore_errors=True)


def geometry_benchmark(
    portrait: Path,
    driving: Path,
    frames: int,
    size: int,
    repeats: int,
    landmarker: Path | None = None,
) -> list[tuple[str, list[float]]]:
    """The geometric engine: its render alone (all-dynamic along the orbit, at ``size`` and at
    512), and a Generate through the web service after that request's preview (what a click on
    Generate waits for, the video written; the page's own transfer not included)."""
    import shutil

    from .conditioning import ConditioningSettings, build_conditioning
    from .engines.geometry import render_geometry
    from .tracking import FaceTracker
    from .ui.service import Service
    from .viewpoint import load_preset

    rows = []
    orbit = load_preset("orbit")
    with FaceTracker(landmarker) as tracker:
        for side in sorted({size, 512}):
            settings = ConditioningSettings(
                mode=Mode.ALL_DYNAMIC, frames=frames, height=side, width=side
            )
            cond = build_conditioning(
                portrait, driving, settings=settings, trajectory=orbit, tracker=tracker
            )
            render_geometry(cond)  # warm-up: the compiled loops load
            rows.append(
                (
                    GEOMETRY_RENDER.format(size=side),
                    _time(lambda c=cond: render_geometry(c), repeats),
                )
            )
    settings = ConditioningSettings(mode=Mode.ALL_DYNAMIC, frames=frames, height=size, width=size)
    service = Service(landmarker=str(landmarker) if landmarker else None, engine="geometry")
    try:
        service.preview(str(portrait), str(driving), settings, orbit, engine="geometry")

        def generate():
            service.generate(str(portrait), str(driving), settings, orbit, engine="geometry")

        rows.append((GEOMETRY_GENERATE, _time(generate, repeats)))
    finally:
        shutil.rmtree(service.output_root, ignore_errors=True)
    return rows


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


def model_benchmark(
    size: str, frames: int, height: int, width: int, repeats: int, device: str = "auto"
) -> list[tuple[str, list[float], float | None]]:
    """Seconds per denoising step (one transformer forward) and peak GPU memory of the
    FactorPortrait transformer, both modulation paths, against a plain Wan transformer of the
    same size with random weights, in the same run. Both make the same video; ours also sees
    the reference's latent frame (T+1 frames in), which is part of what it costs."""
    from diffusers import WanTransformer3DModel

    from .models import FactorPortraitTransformer3DModel
    from .pipelines.checkpoints import TINY_WAN_CONFIG, WAN_13B_CONFIG, WAN_KEYS
    from .pipelines.generation import resolve_device

    wan_sizes = {"1.3b": WAN_13B_CONFIG, "tiny": TINY_WAN_CONFIG}
    if size in wan_sizes:
        wan_config = wan_sizes[size]
    else:  # a checkpoint folder: its transformer's size
        config = FactorPortraitTransformer3DModel.load_config(str(size), subfolder="transformer")
        wan_config = {key: config[key] for key in WAN_KEYS}
    target = resolve_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    t_lat = LATENT.latent_frames(frames)
    h_lat, w_lat = height // LATENT.spatial, width // LATENT.spatial
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(target, dtype)

    latents = randn(1, 16, t_lat, h_lat, w_lat)
    timestep = torch.tensor([500.0], device=target)
    prompt = randn(1, 512, wan_config["text_dim"])
    models = {
        "plain Wan transformer": lambda: WanTransformer3DModel(**wan_config),
        "FactorPortrait, per-token modulation": lambda: FactorPortraitTransformer3DModel(
            **wan_config, expression_code_dim=1024, modulation="per_token"
        ),
        "FactorPortrait, per-frame modulation": lambda: FactorPortraitTransformer3DModel(
            **wan_config, expression_code_dim=1024, modulation="per_frame"
        ),
    }
    conditions = dict(
        reference_latents=randn(1, 16, 1, h_lat, w_lat),
        ray_latents=randn(1, 24, t_lat, h_lat, w_lat),
        normal_latents=randn(1, 16, t_lat, h_lat, w_lat),
        expression_codes=randn(1, t_lat, 1024),
        encoder_hidden_states=prompt,
    )
    results = []
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # both models are cast the same way: no warning
    for name, build in models.items():
        model = build().to(target, dtype).eval()
        if name.startswith("plain"):
            step = lambda m=model: m(latents, timestep, prompt)  # noqa: E731
        else:
            step = lambda m=model: m(latents, timestep, **conditions)  # noqa: E731
        with torch.no_grad():
            step()  # warm-up
            if target.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                step()
                if target.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if target.type == "cuda" else None
        results.append((name, times, peak))
        del model
        if target.type == "cuda":
            torch.cuda.empty_cache()
    return results


def print_model_report(results, size: str, frames: int, height: int, width: int) -> None:
    print(
        f"transformer step ({size}, random weights), {frames}x{height}x{width}, "
        f"one forward per step (no guidance batch)"
    )
    print(f"{'model':40s} {'median s':>10s} {'best s':>10s} {'peak GiB':>10s} {'vs Wan':>8s}")
    base = statistics.median(results[0][1])
    for name, times, peak in results:
        median = statistics.median(times)
        memory = f"{peak:10.2f}" if peak is not None else f"{'n/a (CPU)':>10s}"
        print(f"{name:40s} {median:10.4f} {min(times):10.4f} {memory} {median / base:8.3f}")


def render_benchmark(
    frames: int, sizes: tuple[int, ...], repeats: int, landmarker: Path | None = None
) -> list[tuple[str, list[float]]]:
    """The normal-map rasteriser alone: the template head along the orbit preset."""
    from .head_pose import render_head
    from .head_pose.canonical import load_canonical_face
    from .head_pose.template import build_head_template
    from .tracking import resolve_face_landmarker

    template = build_head_template(load_canonical_face(str(resolve_face_landmarker(landmarker))))
    path = load_preset("orbit").sample(frames)
    head_pose = torch.eye(4).repeat(frames, 1, 1).numpy()
    rows = []
    for size in sizes:
        K, c2w = path.cameras(size, size)
        render_head(template, head_pose, K, c2w, size, size)  # warm-up
        rows.append(
            (
                f"normal maps at {size}",
                _time(
                    lambda K=K, c2w=c2w, size=size: render_head(
                        template, head_pose, K, c2w, size, size
                    ),
                    repeats,
                ),
            )
        )
    return rows


def tiny_pipeline_benchmark(frames: int, size: int, repeats: int) -> list[tuple[str, list[float]]]:
    """VAE encode / decode of the conditions and one denoising step, tiny checkpoint, CPU."""
    from .models import aggregate_codes, pack_plucker
    from .pipelines.checkpoints import tiny_pipeline

    pipe = tiny_pipeline(seed=0)
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(1, 3, frames, size, size, generator=generator) * 2 - 1
    rays = torch.randn(1, frames, 6, size, size, generator=generator)
    with torch.no_grad():
        latents = pipe.encode_video(video)
        reference = pipe.encode_video(video[:, :, :1])
        codes = aggregate_codes(pipe.expression_encoder(torch.rand(1, frames, 3, 64, 64)))
        conditions = dict(
            reference_latents=reference,
            ray_latents=pack_plucker(rays),
            normal_latents=latents,
            expression_codes=codes,
        )
        step = lambda: pipe.transformer(latents, torch.tensor([500.0]), **conditions)  # noqa: E731
        return [
            ("tiny VAE encode (normals video)", _time(lambda: pipe.encode_video(video), repeats)),
            ("tiny VAE decode", _time(lambda: pipe.decode_latents(latents), repeats)),
            ("tiny denoising step", _time(step, repeats)),
        ]


def summary_json(
    rows: dict[str, list[float]], frames: int, size: int, repeats: int, model_rows=None
) -> dict:
    """The figures other tools read (keys fixed by the benchmarks issue) plus every stage."""
    import os
    import platform

    def median(name: str) -> float | None:
        return statistics.median(rows[name]) if name in rows else None

    out = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "settings": {"frames": frames, "size": size, "repeats": repeats},
        "stages": {
            name: {"median_s": statistics.median(t), "best_s": min(t)} for name, t in rows.items()
        },
    }
    if "tracking, per frame" in rows:
        out["tracking_ms_per_frame"] = 1000 * median("tracking, per frame")
    for name in rows:
        if name.startswith("normal maps at "):
            out[f"render_fps_{name.rsplit(' ', 1)[1]}"] = frames / median(name)
    if "plucker rays" in rows:
        out["rays_ms_per_frame"] = 1000 * median("plucker rays") / frames
    if PREVIEW_API in rows:
        out[f"preview_{frames}f_{size}_s"] = median(PREVIEW_API)
        out[f"preview_with_files_{frames}f_{size}_s"] = median(PREVIEW_WITH_FILES)
        out[f"render_fps_{size}_in_preview"] = frames / median(NORMALS_IN_PREVIEW)
    if PREVIEW_UI in rows:
        out[f"preview_ui_{frames}f_{size}_s"] = median(PREVIEW_UI)
    for name in rows:
        if name.startswith(GEOMETRY_RENDER.format(size="")):
            side = name.rsplit(" ", 1)[1]
            out[f"render_fps_geometry_{side}"] = frames / median(name)
    if GEOMETRY_GENERATE in rows:
        out[f"geometry_generate_{frames}f_{size}_s"] = median(GEOMETRY_GENERATE)
    for name, key in (
        ("tiny VAE encode (normals video)", "tiny_vae_encode_s"),
        ("tiny VAE decode", "tiny_vae_decode_s"),
        ("tiny denoising step", "tiny_denoise_step_s"),
    ):
        if name in rows:
            out[key] = median(name)
    if model_rows:
        out["model"] = [
            {"model": name, "median_s": statistics.median(t), "best_s": min(t), "peak_gib": peak}
            for name, t, peak in model_rows
        ]
    return out


def summary_markdown(summary: dict) -> str:
    machine, settings = summary["machine"], summary["settings"]
    lines = [
        "# Benchmarks",
        "",
        f"`python -m factorportrait bench --json ... --markdown ...`: {settings['frames']} frames "
        f"at {settings['size']}x{settings['size']}, median and best of {settings['repeats']}; "
        f"torch {machine['torch']}, {machine['threads']} threads, {machine['cpus']} CPUs, "
        f"CUDA: {machine['cuda'] or 'none'}. Figures from a shared machine: compare ratios.",
        "",
        "| key figure | value |",
        "|---|---|",
    ]
    for key, value in summary.items():
        if isinstance(value, float):
            lines.append(f"| `{key}` | {value:.3f} |")
    lines += ["", "| stage | median s | best s |", "|---|---|---|"]
    for name, stage in summary["stages"].items():
        lines.append(f"| {name.strip('= ')} | {stage['median_s']:.4f} | {stage['best_s']:.4f} |")
    if "model" in summary:
        lines += ["", "| transformer step | median s | peak GiB |", "|---|---|---|"]
        for row in summary["model"]:
            peak = f"{row['peak_gib']:.2f}" if row["peak_gib"] is not None else "n/a (CPU)"
            lines.append(f"| {row['model']} | {row['median_s']:.4f} | {peak} |")
    return "\n".join(lines) + "\n"
