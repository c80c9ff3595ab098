"""`bench`: the CPU stages timed, and a transformer step against plain Wan on request."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .arguments import (
    add_device,
    add_frames,
    add_landmarker,
    add_size,
    check_at_least_one,
    frames_and_size,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="time the CPU stages and print the figures",
        description="Times each CPU stage (median and best of --repeats) and prints a table; "
        "--json adds the key figures (render_fps_512, preview_with_files_*, preview_ui_*, ...).",
    )
    add_frames(parser)
    add_size(parser)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--portrait",
        type=Path,
        help="portrait for the preview timings (default: the example in assets/)",
    )
    parser.add_argument(
        "--driving", type=Path, help="driving clip for the preview timings (default: the example)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--markdown", type=Path, help="and as a markdown table to this file")
    add_landmarker(parser)
    parser.add_argument(
        "--model",
        help="also time a transformer step against plain Wan: tiny, 1.3b or a checkpoint folder",
    )
    add_device(parser, help="for --model: auto, cpu, cuda")
    parser.set_defaults(handler=run)


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    from ..benchmarks import cpu, cpu_summary

    frames, height, width = frames_and_size(args)
    check_at_least_one(args.repeats, "repeats")
    portrait = args.portrait or cpu.EXAMPLE_PORTRAIT
    driving = args.driving or cpu.EXAMPLE_DRIVING
    rows = cpu.camera_benchmark(frames, height, width, args.repeats)
    cpu_summary.print_report(rows, frames, height, width)
    preview_rows = cpu.preview_benchmark(
        portrait, driving, frames, height, width, args.repeats, args.landmarker
    ) + cpu.preview_ui_benchmark(
        portrait, driving, frames, height, width, args.repeats, args.landmarker
    )
    render_rows = cpu.render_benchmark(frames, (256, 512, 1024), args.repeats, args.landmarker)
    render_rows += cpu.geometry_benchmark(
        portrait, driving, frames, height, args.repeats, args.landmarker
    )
    pipeline_rows = cpu.tiny_pipeline_benchmark(frames, height, args.repeats)
    print()
    cpu_summary.print_report(
        preview_rows + render_rows + pipeline_rows,
        frames,
        height,
        width,
        title="preview (all-dynamic, warm tracker; API and web service), rasteriser, tiny pipeline",
    )
    model_rows = None
    if args.model is None and args.device != "cpu" and torch_cuda_available():
        args.model = "1.3b"  # on a GPU, always measure the real size against plain Wan
    if args.model is not None:
        print()
        model_rows = cpu.model_benchmark(
            args.model, frames, height, width, args.repeats, args.device
        )
        cpu_summary.print_model_report(model_rows, args.model, frames, height, width)
    summary = cpu_summary.summary_json(
        dict(rows + preview_rows + render_rows + pipeline_rows),
        frames,
        height,
        args.repeats,
        model_rows,
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\n-> {args.json}")
    if args.markdown:
        args.markdown.write_text(cpu_summary.summary_markdown(summary))
        print(f"-> {args.markdown}")
    return 0
