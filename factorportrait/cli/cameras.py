"""`cameras` (sample a trajectory to per-frame cameras and ray maps) and `presets`."""

from __future__ import annotations

import argparse
import time

from ..config import VIDEO, check_fps
from .arguments import add_fps, add_frames, add_out, add_size, frames_and_size


def register_cameras(commands) -> None:
    parser = commands.add_parser(
        "cameras",
        help="sample a camera trajectory: trajectory.json, rays.mp4, trajectory.html",
        description="Samples a camera trajectory (a preset or a JSON file) to per-frame cameras "
        "and writes OUT/trajectory.json (K and c2w per frame, plus the keyframes), OUT/rays.mp4 "
        "(the Plücker ray maps: direction | moment) and OUT/trajectory.html (a 3D view).",
    )
    parser.add_argument(
        "--preset",
        "--camera",
        dest="camera",
        required=True,
        metavar="NAME|FILE",
        help="a preset from camera_presets/ (see `presets`) or a trajectory JSON file",
    )
    add_frames(parser, help=f"number of frames, 4k+1 (default {VIDEO.frames})")
    add_size(parser, help=f"S or WxH in pixels, multiples of 16 (default {VIDEO.height})")
    add_fps(parser, help=f"frame rate of rays.mp4 (default {VIDEO.fps})")
    add_out(parser, help="output folder")
    parser.set_defaults(handler=run_cameras)


def run_cameras(args: argparse.Namespace) -> int:
    from ..viewpoint import resolve_trajectory
    from ..viewpoint.export import compute_camera_outputs, write_camera_outputs

    frames, height, width = frames_and_size(args)
    fps = check_fps(args.fps)
    trajectory = resolve_trajectory(args.camera)
    start = time.perf_counter()
    outputs = compute_camera_outputs(trajectory, frames, height, width, fps)
    paths = write_camera_outputs(outputs, args.out)
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in outputs.timings.items())
    print(
        f"{trajectory.name}: {frames} frames at {width}x{height} in "
        f"{time.perf_counter() - start:.2f}s ({timings})"
    )
    for path in paths.values():
        print(f"  {path}")
    return 0


def register_presets(commands) -> None:
    parser = commands.add_parser(
        "presets",
        help="list the camera trajectory presets",
        description="Lists the presets in camera_presets/.",
    )
    parser.set_defaults(handler=run_presets)


def run_presets(args: argparse.Namespace) -> int:
    from ..viewpoint import load_presets

    presets = load_presets()
    width = max(map(len, presets))
    for name, trajectory in presets.items():
        print(f"{name:{width}s}  {trajectory.description}")
    return 0
