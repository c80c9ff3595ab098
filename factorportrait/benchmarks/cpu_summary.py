"""The CPU stages' figures (``bench``): printed as tables, and as the JSON and markdown that
other tools and BENCHMARKS.md read (the JSON's key figures are fixed by the benchmarks issue)."""

from __future__ import annotations

import statistics

import torch

from .cpu import (
    GEOMETRY_GENERATE,
    GEOMETRY_RENDER,
    NORMALS_IN_PREVIEW,
    PREVIEW_API,
    PREVIEW_UI,
    PREVIEW_WITH_FILES,
)


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
