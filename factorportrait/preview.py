"""The preview: everything the model will be conditioned on, as files a person can look at.

normals.mp4        normal renders of the posed template head (RGB = (n+1)/2)
rays.mp4           Plücker ray maps (direction | moment)
tracking.mp4       the driving frames with the tracked face mesh drawn on
source.png         the portrait, framed as the output, with its tracked mesh
trajectory.json    K and c2w per frame (as the cameras command writes it)
conditioning.npz   the arrays themselves (plain arrays and strings; allow_pickle=False loads it)
summary.json       frames, fps, size, mode, faces found/filled, jitter, stage times

For the wan-animate engine (README: Engines) also, through ``extra_videos``:
pose.mp4           the skeleton video Wan2.2-Animate is driven by
face.mp4           the face-crop video it reads expressions from
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .conditioning import Conditioning
from .head_pose.rasterizer import normals_to_rgb
from .io import staged_output_dir, write_json, write_video
from .viewpoint import Trajectory, rays_to_rgb
from .viewpoint.export import CAMERA_PATH_FORMAT, CONVENTIONS

PREVIEW_FILES = (
    "normals.mp4",
    "rays.mp4",
    "tracking.mp4",
    "source.png",
    "trajectory.json",
    "conditioning.npz",
    "summary.json",
)


@lru_cache(maxsize=1)
def _mesh_edges() -> np.ndarray:
    """MediaPipe's own face-mesh tessellation, as (E, 2) landmark index pairs."""
    from mediapipe.tasks.python.vision import FaceLandmarksConnections

    return np.array([(c.start, c.end) for c in FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION])


def draw_face_mesh(image: np.ndarray, landmarks: np.ndarray, colour=(80, 255, 120)) -> np.ndarray:
    """A copy of the image with the tracked mesh drawn on (anti-aliased lines)."""
    out = np.ascontiguousarray(image.copy())
    segments = np.round(landmarks[_mesh_edges(), :2] * 4).astype(np.int32)  # 2 bits subpixel
    cv2.polylines(out, list(segments), False, colour, 1, cv2.LINE_AA, shift=2)
    return out


def tracking_frames(cond: Conditioning) -> Iterator[np.ndarray]:
    """The tracking video, frame by frame: the driving frames with their tracked mesh drawn
    on or, when the head does not follow a driving video (camera-only), the portrait's own
    tracking held for every output frame."""
    if cond.driving_frames is not None:
        for frame, landmarks in zip(cond.driving_frames, cond.driving_landmarks, strict=True):
            yield draw_face_mesh(frame, landmarks)
    else:
        still = draw_face_mesh(cond.reference, cond.source_landmarks)
        for _ in range(cond.frames):
            yield still


def fit_height(frame: np.ndarray, height: int) -> np.ndarray:
    """The frame scaled to ``height``, keeping its aspect ratio (width rounded to even, for
    H.264)."""
    h, w = frame.shape[:2]
    width = max(2, round(w * height / h / 2) * 2)
    if (h, w) == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def side_by_side(videos: list, height: int) -> np.ndarray:
    """Videos of equal length (arrays or iterables of frames), each scaled to ``height``,
    placed left to right: (F, height, sum of widths, 3)."""
    panels = [np.stack([fit_height(frame, height) for frame in video]) for video in videos]
    return np.concatenate(panels, axis=2)


def trajectory_record(cond: Conditioning, trajectory: Trajectory | None) -> dict:
    return {
        "format": CAMERA_PATH_FORMAT,
        "version": 1,
        "conventions": CONVENTIONS,
        "frames": cond.frames,
        "height": cond.height,
        "width": cond.width,
        "fps": cond.fps,
        "mode": cond.mode,
        "trajectory": trajectory.model_dump(mode="json") if trajectory is not None else None,
        "K": cond.K.tolist(),
        "c2w": cond.c2w.tolist(),
        "head_pose": cond.head_pose.tolist(),
    }


def write_preview(
    cond: Conditioning,
    out: str | Path,
    trajectory: Trajectory | None = None,
    extra_videos: dict[str, np.ndarray] | None = None,
) -> dict[str, Path]:
    """Write the preview files into ``out`` (all or nothing). Returns their paths.

    ``extra_videos`` ({"pose.mp4": frames, ...}, (F,H,W,3) uint8 each) are written beside the
    others at the conditioning's frame rate: what another engine is driven by."""
    out = Path(out)
    extra_videos = extra_videos or {}
    names = [*PREVIEW_FILES, *extra_videos]
    seconds: dict[str, float] = {}
    with staged_output_dir(out) as stage:
        start = time.perf_counter()
        write_video(stage / "normals.mp4", normals_to_rgb(cond.normals, cond.mask), cond.fps)
        seconds["write normals.mp4"] = time.perf_counter() - start
        start = time.perf_counter()
        write_video(stage / "rays.mp4", rays_to_rgb(cond.rays), cond.fps)
        seconds["write rays.mp4"] = time.perf_counter() - start
        start = time.perf_counter()
        tracking = (_even(frame) for frame in tracking_frames(cond))
        write_video(stage / "tracking.mp4", tracking, cond.fps)
        seconds["write tracking.mp4"] = time.perf_counter() - start
        for name, frames in extra_videos.items():
            start = time.perf_counter()
            write_video(stage / name, (_even(frame) for frame in frames), cond.fps)
            seconds[f"write {name}"] = time.perf_counter() - start
        cv2.imwrite(
            str(stage / "source.png"),
            cv2.cvtColor(draw_face_mesh(cond.reference, cond.source_landmarks), cv2.COLOR_RGB2BGR),
        )
        write_json(stage / "trajectory.json", trajectory_record(cond, trajectory))
        start = time.perf_counter()
        np.savez(stage / "conditioning.npz", **cond.arrays())
        seconds["write conditioning.npz"] = time.perf_counter() - start
        summary = cond.report.to_dict()
        summary["seconds"] = {**cond.report.seconds, **seconds}
        summary["files"] = names
        (stage / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return {name: out / name for name in names}


def _plain(value):
    """numpy scalars and arrays in the report -> JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sides: drop a last odd row/column."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]
