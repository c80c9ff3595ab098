"""The CPU stages timed: ``python -m factorportrait bench``.

It times every CPU stage (cameras and rays, tracking, the whole preview through the API and
through the web service, the rasteriser at 256/512/1024 and inside the preview, the tiny
pipeline's VAE and denoising step) and, with ``--model``, a transformer step against plain Wan;
``cpu_summary`` prints medians and best of several repeats and writes the ``--json`` /
``--markdown`` files. diffusers loads only for the stages that need it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from ..io import write_video
from ..modes import Mode
from ..viewpoint import load_preset, plucker_rays, rays_to_rgb, trajectory_figure
from .timing import GIB, free_memory, peak_bytes, reset_peak, time_calls

ASSETS = Path(__file__).resolve().parents[2] / "assets"
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

# The model step's rows, in the order they are built and timed (plain Wan first: the base).
STEP_MODELS = {
    "plain Wan transformer": "plain",
    "FactorPortrait, per-token modulation": "per_token",
    "FactorPortrait, per-frame modulation": "per_frame",
}


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
            time_calls(lambda: trajectory.sample(frames).cameras(height, width), repeats),
        ),
        (
            "plucker rays",
            time_calls(lambda: plucker_rays(K, c2w, height, width, reference_c2w=c2w[0]), repeats),
        ),
        ("ray maps -> RGB", time_calls(lambda: rays_to_rgb(rays), repeats)),
        ("plotly figure", time_calls(lambda: trajectory_figure(K, c2w, height, width), repeats)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results.append(
            (
                "rays.mp4 encode",
                time_calls(
                    lambda: write_video(Path(tmp) / "rays.mp4", rgb, 16), max(1, repeats // 2)
                ),
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
    from ..conditioning import ConditioningSettings, build_conditioning
    from ..conditioning.preview import write_preview
    from ..io.media import read_video
    from ..tracking import FaceTracker

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
        stages["tracking, per frame"] = time_calls(
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

    from ..conditioning import ConditioningSettings
    from ..ui.service import Service

    settings = ConditioningSettings(
        mode=Mode.ALL_DYNAMIC, frames=frames, height=height, width=width
    )
    service = Service(landmarker=str(landmarker) if landmarker else None)
    try:

        def request():
            service.preview(str(portrait), str(driving), settings, engine="factorportrait")

        request()
        return [(PREVIEW_UI, time_calls(request, repeats))]
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

    from ..conditioning import ConditioningSettings, build_conditioning
    from ..engines.geometry import render_geometry
    from ..tracking import FaceTracker
    from ..ui.service import Service
    from ..viewpoint import load_preset

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
                    time_calls(lambda c=cond: render_geometry(c), repeats),
                )
            )
    settings = ConditioningSettings(mode=Mode.ALL_DYNAMIC, frames=frames, height=size, width=size)
    service = Service(landmarker=str(landmarker) if landmarker else None, engine="geometry")
    try:
        service.preview(str(portrait), str(driving), settings, orbit, engine="geometry")

        def generate():
            service.generate(str(portrait), str(driving), settings, orbit, engine="geometry")

        rows.append((GEOMETRY_GENERATE, time_calls(generate, repeats)))
    finally:
        shutil.rmtree(service.output_root, ignore_errors=True)
    return rows


def render_benchmark(
    frames: int, sizes: tuple[int, ...], repeats: int, landmarker: Path | None = None
) -> list[tuple[str, list[float]]]:
    """The normal-map rasteriser alone: the template head along the orbit preset."""
    from ..head_pose import render_head
    from ..head_pose.canonical import load_canonical_face
    from ..head_pose.template import build_head_template
    from ..tracking import resolve_face_landmarker

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
                time_calls(
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
    from ..models import aggregate_codes, pack_plucker
    from ..pipelines.checkpoints import tiny_pipeline

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
            (
                "tiny VAE encode (normals video)",
                time_calls(lambda: pipe.encode_video(video), repeats),
            ),
            ("tiny VAE decode", time_calls(lambda: pipe.decode_latents(latents), repeats)),
            ("tiny denoising step", time_calls(step, repeats)),
        ]


def model_benchmark(
    size: str, frames: int, height: int, width: int, repeats: int, device: str = "auto"
) -> list[tuple[str, list[float], float | None]]:
    """Seconds per denoising step (one transformer forward) and peak GPU memory of the
    FactorPortrait transformer, both modulation paths, against a plain Wan transformer of the
    same size with random weights, in the same run. Both make the same video; ours also sees
    the reference's latent frame (T+1 frames in), which is part of what it costs. Each model is
    built in float32 and cast whole to bf16 on a GPU, as these figures have always been taken
    (``bench-gpu`` builds as loading does, its float32 parts kept)."""
    from diffusers.utils import logging as diffusers_logging

    from ..pipelines.generation import resolve_device
    from .models import compared_transformers, transformer_step, wan_config_of

    wan_config = wan_config_of(size)
    target = resolve_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    builders = compared_transformers(wan_config)
    diffusers_logging.set_verbosity_error()  # both models are cast the same way: no warning
    results = []
    for name, kind in STEP_MODELS.items():
        model = builders[kind]().to(target, dtype).eval()
        step = transformer_step(model, frames, height, width, target, dtype)
        with torch.no_grad():
            step()  # warm-up
            reset_peak(target)
            times = time_calls(step, repeats, target)
        peak = peak_bytes(target)
        results.append((name, times, None if peak is None else peak / GIB))
        del model, step
        free_memory(target)
    return results
