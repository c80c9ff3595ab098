"""`preview`: every condition built on the CPU and written as videos, PNG and arrays."""

from __future__ import annotations

import argparse
import sys
import time

from ..engines import ENGINES
from .arguments import (
    add_conditioning_arguments,
    add_out,
    build_conditioning_from_args,
    conditioning_settings,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "preview",
        help="build every condition on the CPU and write them as videos and a PNG",
        description="Tracks the portrait and the driving video, builds the camera path, head "
        "poses, normal renders, ray maps and expression features for a mode, and writes "
        "normals.mp4, rays.mp4, tracking.mp4, source.png, trajectory.json and summary.json "
        "into OUT (with --npz also conditioning.npz, the arrays themselves). No GPU, no model. "
        "With --engine wan-animate also pose.mp4 and face.mp4: the skeleton and face-crop "
        "videos Wan2.2-Animate is driven by.",
    )
    add_conditioning_arguments(parser)
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="which engine's conditions to preview (default $FACTORPORTRAIT_ENGINE or "
        "factorportrait); wan-animate adds pose.mp4 and face.mp4",
    )
    parser.add_argument(
        "--npz",
        action="store_true",
        help="also write conditioning.npz: every conditioning array (hundreds of MB at 512)",
    )
    add_out(parser, help="output folder")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..conditioning.preview import write_preview
    from ..engines import checked_engine, default_engine, engine_runtime

    runtime = engine_runtime(checked_engine(args.engine or default_engine()))
    settings, trajectory = conditioning_settings(args)
    # Previewed as the engine will make it (wan-animate: its frame rate and framing).
    settings, notes = runtime.request(settings)
    start = time.perf_counter()
    cond = build_conditioning_from_args(args, settings, trajectory)
    # The engine's own videos (wan-animate: the skeleton and face crops it is driven by).
    extra_videos = {f"{name}.mp4": v for name, v in runtime.preview_videos(cond, None).items()}
    paths = write_preview(cond, args.out, trajectory, extra_videos or None, arrays=args.npz)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height}, "
        f"{cond.fps:g} fps, in {time.perf_counter() - start:.2f}s"
    )
    for warning in [*notes, *cond.report.warnings]:
        print(f"  note: {warning}")
    # No model here: a FactorPortrait request is judged against the default trained ranges
    # (generate uses its checkpoint's own); wan-animate says what it cannot honour.
    for warning in runtime.warnings(cond, trajectory, None):
        print(f"warning: {warning}", file=sys.stderr)
    for path in paths.values():
        print(f"  {path}")
    return 0
