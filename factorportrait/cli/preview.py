"""`preview`: every condition built on the CPU and written as videos, PNG and arrays."""

from __future__ import annotations

import argparse
import sys
import time

from .arguments import (
    add_conditioning_arguments,
    add_out,
    build_conditioning_from_args,
    conditioning_settings,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "preview",
        help="build every condition on the CPU and write them as videos, PNG and arrays",
        description="Tracks the portrait and the driving video, builds the camera path, head "
        "poses, normal renders, ray maps and expression features for a mode, and writes "
        "normals.mp4, rays.mp4, tracking.mp4, source.png, trajectory.json, conditioning.npz "
        "and summary.json into OUT. No GPU, no model.",
    )
    add_conditioning_arguments(parser)
    add_out(parser, help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..guardrails import request_warnings
    from ..preview import write_preview

    settings, trajectory = conditioning_settings(args)
    start = time.perf_counter()
    cond = build_conditioning_from_args(args, settings, trajectory)
    paths = write_preview(cond, args.out, trajectory)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height}, "
        f"{cond.fps:g} fps, in {time.perf_counter() - start:.2f}s"
    )
    for warning in cond.report.warnings:
        print(f"  note: {warning}")
    # No checkpoint here: judged against the default trained ranges (generate uses its own).
    for warning in request_warnings(cond, trajectory, None):
        print(f"warning: {warning}", file=sys.stderr)
    for path in paths.values():
        print(f"  {path}")
    return 0
