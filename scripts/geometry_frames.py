"""PNG frames and contact sheets of the geometric engine on the bundled example, for looking at.

    .venv/bin/python scripts/geometry_frames.py OUT [--size 512] [--frames 49] [--speed-only]
        [--portrait PHOTO]

Writes, under OUT:
- ``<mode>/frame_NNN.png`` and ``<mode>_sheet.png`` for the four modes (the expressive clip
  drives the dynamic ones; camera-only and all-dynamic fly the orbit; novel-dynamic holds the
  default novel view);
- ``limits_sheet.png``: what the engine does badly: the head turned 0/30/45/60 degrees, the
  camera 60 and 90 degrees round, the widest open mouth close up;
- the render's speed (frames/s of ``render_geometry`` itself, the conditioning already built;
  best of three) printed, with the scene's one-off set-up time.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factorportrait.conditioning import ConditioningSettings, build_conditioning  # noqa: E402
from factorportrait.engines.geometry import GEOMETRY_NOTICE, render_geometry  # noqa: E402
from factorportrait.engines.geometry.scene import build_scene  # noqa: E402
from factorportrait.tracking import FaceTracker  # noqa: E402
from factorportrait.viewpoint import Trajectory  # noqa: E402

PORTRAIT = ROOT / "assets" / "example_portrait.jpg"
CLIP = ROOT / "assets" / "example_expressive.mp4"
MODES = ("frontal-dynamic", "novel-dynamic", "camera-only", "all-dynamic")


def save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def labelled(rgb: np.ndarray, text: str) -> np.ndarray:
    out = rgb.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def sheet(tiles: list[np.ndarray], columns: int, tile: int = 256) -> np.ndarray:
    tiles = [cv2.resize(t, (tile, tile), interpolation=cv2.INTER_AREA) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + columns], 1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, 0)


def speed(conditioning) -> tuple[float, float]:
    """(frames/s of the per-frame render, seconds of the scene's set-up): best of three."""
    whole, setup = [], []
    for _ in range(3):
        start = time.perf_counter()
        build_scene(conditioning)
        setup.append(time.perf_counter() - start)
        start = time.perf_counter()
        render_geometry(conditioning)
        whole.append(time.perf_counter() - start)
    frames = len(conditioning.c2w)
    return frames / (min(whole) - min(setup)), min(setup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument(
        "--landmarker", default=str(ROOT / ".cache" / "test-media" / "face_landmarker.task")
    )
    parser.add_argument("--speed-only", action="store_true", help="only time the render")
    parser.add_argument("--portrait", type=Path, default=PORTRAIT, help="another photo")
    args = parser.parse_args()
    print(GEOMETRY_NOTICE)
    with FaceTracker(args.landmarker) as tracker:
        if args.speed_only:
            settings = ConditioningSettings(height=args.size, width=args.size, frames=args.frames)
            conditioning = build_conditioning(
                args.portrait, CLIP, settings=settings, tracker=tracker
            )
            render_geometry(conditioning)  # compiled loops loaded
            fps, setup = speed(conditioning)
            print(
                f"render: {fps:.1f} frames/s at {args.size}x{args.size} "
                f"(scene set-up {setup:.2f} s once per request)"
            )
            return

        def condition(mode: str, driving=CLIP, **kwargs):
            settings = ConditioningSettings(
                mode=mode, height=args.size, width=args.size, frames=args.frames, **kwargs
            )
            return build_conditioning(args.portrait, driving, settings=settings, tracker=tracker)

        made = {}
        for mode in MODES:
            conditioning = condition(mode, None if mode == "camera-only" else CLIP)
            made[mode] = conditioning
            frames = render_geometry(conditioning)
            for index, frame in enumerate(frames):
                save(args.out / mode / f"frame_{index:03d}.png", frame)
            picks = np.linspace(0, len(frames) - 1, 8).round().astype(int)
            tiles = [labelled(frames[i], f"{mode} {i}") for i in picks]
            save(args.out / f"{mode}_sheet.png", sheet(tiles, 4))
            print(f"{mode}: {len(frames)} frames -> {args.out / mode}")

        fps, setup = speed(made["frontal-dynamic"])
        print(
            f"render: {fps:.1f} frames/s at {args.size}x{args.size} "
            f"(scene set-up {setup:.2f} s once per request)"
        )

        # What the engine does badly.
        still = made["camera-only"]
        tiles = []
        count = len(still.c2w)
        for yaw in (0, 30, 45, 60):
            pose = np.tile(np.eye(4), (count, 1, 1))
            in_camera = np.linalg.inv(still.c2w) @ still.head_pose
            turn = cv2.Rodrigues(np.array([0.0, np.radians(yaw), 0.0]))[0]
            pose[:, :3, :3] = turn @ in_camera[:, :3, :3]
            pose[:, :3, 3] = in_camera[:, :3, 3]
            turned = replace(still, head_pose=still.c2w @ pose)
            tiles.append(labelled(render_geometry(turned)[0], f"head turned {yaw} deg"))
        for azimuth in (60, 90):
            view = Trajectory.static(azimuth, 0.0, 1.0, name="view")
            far = build_conditioning(
                args.portrait,
                None,
                settings=ConditioningSettings(
                    mode="camera-only", height=args.size, width=args.size, frames=5
                ),
                trajectory=view,
                tracker=tracker,
            )
            tiles.append(labelled(render_geometry(far)[-1], f"camera {azimuth} deg round"))
        driven = made["frontal-dynamic"]
        jaw = driven.blendshape_names.index("jawOpen")
        widest = int(np.argmax(driven.blendshapes[:, jaw]))
        frame = render_geometry(driven)[widest]
        size = args.size
        mouth = driven.face_pixels[widest, [61, 291, 17, 0]]
        centre = mouth.mean(0).round().astype(int)
        half = size // 6
        y0, x0 = np.clip(centre[::-1] - half, 0, size - 2 * half)
        close = frame[y0 : y0 + 2 * half, x0 : x0 + 2 * half]
        tiles.append(labelled(cv2.resize(close, (size, size)), f"open mouth (frame {widest})"))
        tiles.append(labelled(frame, f"open mouth, whole (frame {widest})"))
        save(args.out / "limits_sheet.png", sheet(tiles, 4))
        print(f"limits -> {args.out / 'limits_sheet.png'}")


if __name__ == "__main__":
    main()
