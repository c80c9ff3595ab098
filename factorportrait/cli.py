"""Command line: ``python -m factorportrait <command> ...``.

Every command validates its input before doing any work; a refused input prints one line,
``error: ...``, and exits 2 (argparse's convention), with nothing written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .config import VIDEO, check_fps, check_frame_count, parse_size
from .errors import InputError

EXIT_INPUT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (usage stays available through --help)."""

    def error(self, message: str):
        self.exit(EXIT_INPUT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m factorportrait",
        description="FactorPortrait: controllable portrait animation "
        "(expression, head pose and viewpoint as separate controls).",
    )
    parser.add_argument("--version", action="version", version=f"factorportrait {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    cameras = commands.add_parser(
        "cameras",
        help="sample a camera trajectory: trajectory.json, rays.mp4, trajectory.html",
        description="Samples a camera trajectory (a preset or a JSON file) to per-frame cameras "
        "and writes OUT/trajectory.json (K and c2w per frame, plus the keyframes), OUT/rays.mp4 "
        "(the Plücker ray maps: direction | moment) and OUT/trajectory.html (a 3D view).",
    )
    cameras.add_argument(
        "--preset",
        "--camera",
        dest="camera",
        required=True,
        metavar="NAME|FILE",
        help="a preset from camera_presets/ (see `presets`) or a trajectory JSON file",
    )
    cameras.add_argument(
        "--frames",
        type=int,
        default=VIDEO.frames,
        help=f"number of frames, 4k+1 (default {VIDEO.frames})",
    )
    cameras.add_argument(
        "--size",
        default=str(VIDEO.height),
        help=f"S or WxH in pixels, multiples of 16 (default {VIDEO.height})",
    )
    cameras.add_argument(
        "--fps", type=float, default=VIDEO.fps, help=f"frame rate of rays.mp4 (default {VIDEO.fps})"
    )
    cameras.add_argument("--out", required=True, type=Path, help="output folder")
    cameras.set_defaults(handler=_run_cameras)

    presets = commands.add_parser(
        "presets",
        help="list the camera trajectory presets",
        description="Lists the presets in camera_presets/.",
    )
    presets.set_defaults(handler=_run_presets)

    bench = commands.add_parser(
        "bench",
        help="time the CPU stages and print the figures",
        description="Times each CPU stage (median and best of --repeats) and prints a table.",
    )
    bench.add_argument("--frames", type=int, default=VIDEO.frames)
    bench.add_argument("--size", default=str(VIDEO.height))
    bench.add_argument("--repeats", type=int, default=5)
    bench.set_defaults(handler=_run_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


def _run_cameras(args: argparse.Namespace) -> int:
    from .camera import resolve_trajectory
    from .camera.export import compute_camera_outputs, write_camera_outputs

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
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


def _run_presets(args: argparse.Namespace) -> int:
    from .camera import load_presets

    presets = load_presets()
    width = max(map(len, presets))
    for name, trajectory in presets.items():
        print(f"{name:{width}s}  {trajectory.description}")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import camera_benchmark, print_report

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    if args.repeats < 1:
        raise InputError(f"repeats: expected at least 1, got {args.repeats}")
    print_report(camera_benchmark(frames, height, width, args.repeats), frames, height, width)
    return 0
