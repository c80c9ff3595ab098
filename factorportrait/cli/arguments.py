"""Options several commands share, declared once, and what they turn into once checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import VIDEO, check_frame_count, parse_size
from ..engines import REGISTRY
from ..errors import InputError
from ..modes import MODES

VERBOSE_HELP = "show MediaPipe's own log lines (hidden by default)"


def add_frames(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    parser.add_argument("--frames", type=int, default=VIDEO.frames, help=help)


def add_size(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    parser.add_argument("--size", default=str(VIDEO.height), help=help)


def add_fps(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    parser.add_argument("--fps", type=float, default=VIDEO.fps, help=help)


def add_device(parser: argparse.ArgumentParser, *, help: str) -> None:
    parser.add_argument("--device", default="auto", help=help)


def add_out(parser: argparse.ArgumentParser, *, help: str | None = None) -> None:
    parser.add_argument("--out", required=True, type=Path, help=help)


def add_landmarker(parser: argparse.ArgumentParser, *, help: str = "face_landmarker.task") -> None:
    parser.add_argument("--landmarker", type=Path, help=help)


def add_verbose(parser: argparse.ArgumentParser, *, help: str | None = VERBOSE_HELP) -> None:
    parser.add_argument("--verbose", action="store_true", help=help)


def frames_and_size(args: argparse.Namespace) -> tuple[int, int, int]:
    """--frames and --size, checked: (frames, height, width)."""
    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    return frames, height, width


def check_at_least_one(value: int, name: str) -> int:
    if value < 1:
        raise InputError(f"{name}: expected at least 1, got {value}")
    return value


def add_conditioning_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs and settings of the factorised core, shared by preview and generate."""
    parser.add_argument("--portrait", required=True, type=Path, help="the portrait photo")
    parser.add_argument("--driving", type=Path, help="driving video (optional in camera-only mode)")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument(
        "--camera",
        metavar="NAME|FILE",
        help="trajectory preset or JSON file for camera-only and all-dynamic (default orbit)",
    )
    parser.add_argument(
        "--azimuth",
        type=float,
        default=30.0,
        help="novel-dynamic: degrees from the portrait's view (default 30)",
    )
    parser.add_argument(
        "--elevation",
        type=float,
        default=0.0,
        help="novel-dynamic: degrees from the portrait's view (default 0)",
    )
    parser.add_argument(
        "--distance",
        type=float,
        default=1.0,
        help="novel-dynamic: factor of the portrait's distance (default 1)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        help="output frames, 4k+1 (default: the driving video's length, or 49)",
    )
    # None: the engine's own (engines.REGISTRY; conditioning_settings resolves it).
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="output frame rate (default: the engine's own: "
        + ", ".join(f"{e.name} {e.default_fps():g}" for e in REGISTRY.values())
        + ")",
    )
    parser.add_argument(
        "--size",
        default=None,
        help="S or WxH, multiples of 16 (default: the engine's own square: "
        + ", ".join(f"{e.name} {e.default_size()}" for e in REGISTRY.values())
        + ")",
    )
    parser.add_argument(
        "--pose-strength",
        type=float,
        default=1.0,
        help="scale of the driving head motion, 0 to 2 (default 1)",
    )
    parser.add_argument(
        "--absolute-pose",
        action="store_true",
        help="copy the driving head's orientation instead of its motion",
    )
    parser.add_argument(
        "--no-smoothing",
        action="store_true",
        help="turn off temporal smoothing of pose and expression",
    )
    add_landmarker(
        parser,
        help="face_landmarker.task (default: $FACTORPORTRAIT_FACE_LANDMARKER, "
        "the user cache, or the official download)",
    )
    add_verbose(parser)


def conditioning_settings(args: argparse.Namespace):
    """ConditioningSettings from add_conditioning_arguments' options, validated, and the
    trajectory --camera names (None without one)."""
    from ..conditioning import ConditioningSettings
    from ..viewpoint import resolve_trajectory

    info = request_engine(args)
    height, width = parse_size(str(info.default_size()) if args.size is None else args.size)
    settings = ConditioningSettings(
        mode=args.mode,
        frames=args.frames,
        fps=info.default_fps() if args.fps is None else args.fps,
        height=height,
        width=width,
        smoothing=not args.no_smoothing,
        relative_pose=not args.absolute_pose,
        pose_strength=args.pose_strength,
        novel_azimuth=args.azimuth,
        novel_elevation=args.elevation,
        novel_distance=args.distance,
    ).validated()
    trajectory = resolve_trajectory(args.camera) if args.camera else None
    if trajectory is not None and not settings.mode.moving_camera:
        raise InputError(
            f"--camera: mode {args.mode} keeps the camera still; use camera-only "
            "or all-dynamic to follow a trajectory"
        )
    return settings, trajectory


def request_engine(args: argparse.Namespace):
    """The registry's entry for the engine a command names (--engine, else
    $FACTORPORTRAIT_ENGINE, else factorportrait): its defaults fill what the user left unset."""
    from ..engines import default_engine, engine_info

    return engine_info(getattr(args, "engine", None) or default_engine())


def build_conditioning_from_args(args: argparse.Namespace, settings, trajectory):
    """The Conditioning for --portrait and --driving under the checked settings."""
    from ..conditioning import build_conditioning

    return build_conditioning(
        args.portrait,
        args.driving,
        settings=settings,
        trajectory=trajectory,
        landmarker_path=args.landmarker,
    )
