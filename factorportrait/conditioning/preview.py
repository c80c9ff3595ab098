"""The preview: everything the model will be conditioned on, as files a person can look at.

normals.mp4        normal renders of the posed template head (RGB = (n+1)/2), rendered here
                   straight to colours unless the float maps were made (summary: "normals")
rays.mp4           Plücker ray maps (direction | moment), each panel at most 256 px high
tracking.mp4       the driving frames with the tracked face mesh drawn on
source.png         the portrait, framed as the output, with its tracked mesh
trajectory.json    K and c2w per frame (as the cameras command writes it)
summary.json       frames, fps, size, mode, faces found/filled, jitter, stage times
conditioning.npz   only when asked (``arrays=True``, ``preview --npz``): the arrays themselves
                   (plain arrays and strings; allow_pickle=False loads it), hundreds of MB

The files are written concurrently (each video's ffmpeg is a process of its own) and only as
large as a browser needs: the tracking video at most the output's height, the ray maps' panels
at most 256 px high, H.264 at CRF 23.

For the wan-animate engine (README: Engines) also, through ``extra_videos``:
pose.mp4           the skeleton video Wan2.2-Animate is driven by
face.mp4           the face-crop video it reads expressions from
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..io import staged_output_dir, write_json, write_video
from ..viewpoint import Trajectory, plucker_rays, rays_to_rgb
from ..viewpoint.export import CAMERA_PATH_FORMAT, CONVENTIONS
from . import Conditioning

PREVIEW_FILES = (
    "normals.mp4",
    "rays.mp4",
    "tracking.mp4",
    "source.png",
    "trajectory.json",
    "summary.json",
)
ARRAYS_FILE = "conditioning.npz"  # with arrays=True
PREVIEW_CRF = 23  # x264's default: plenty for flat-shaded normals and smooth ray maps
# Previews are watched once, right away: x264's fastest preset encodes the four preview videos
# in half the time of "veryfast" (1.2 s against 2.4 s at 49x512x512 on 2 cores) for files about
# three times larger (2.4 MB against 0.8 MB in all).
PREVIEW_PRESET = "ultrafast"
# The ray-map video's panels (direction | moment) at most this high: the web page shows the video
# in a third of its width, so each panel gets about half of what the normals video gets.
RAYS_PANEL_HEIGHT = 256


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


def tracking_frames(cond: Conditioning, height: int | None = None) -> Iterator[np.ndarray]:
    """The tracking video, frame by frame: the driving frames with their tracked mesh drawn
    on or, when the head does not follow a driving video (camera-only), the portrait's own
    tracking held for every output frame. With ``height``, frames taller than it are scaled
    down to it first (the mesh drawn at the size shown)."""
    if cond.driving_frames is not None:
        for frame, landmarks in zip(cond.driving_frames, cond.driving_landmarks, strict=True):
            yield _draw_at_height(frame, landmarks, height)
    else:
        still = _draw_at_height(cond.reference, cond.source_landmarks, height)
        for _ in range(cond.frames):
            yield still


def _draw_at_height(frame: np.ndarray, landmarks: np.ndarray, height: int | None) -> np.ndarray:
    if height is None or frame.shape[0] <= height:
        return draw_face_mesh(frame, landmarks)
    scaled = fit_height(frame, height)
    factors = np.array([scaled.shape[1] / frame.shape[1], scaled.shape[0] / frame.shape[0]])
    return draw_face_mesh(scaled, landmarks[:, :2] * factors)


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


def browser_rays(cond: Conditioning) -> np.ndarray:
    """The ray maps at the size the page shows them (panels at most ``RAYS_PANEL_HEIGHT`` high,
    sides even for H.264), made from the cameras at that size: the maps are smooth, so
    nothing shows that the full size would add, and making them small costs a fraction of
    the full 300 MB at 49x512x512. At or under that height, the conditioning's own maps."""
    step = -(-cond.height // RAYS_PANEL_HEIGHT)  # rounded up
    if step == 1:
        return cond.rays
    height, width = cond.height // step // 2 * 2, cond.width // step // 2 * 2
    if cond.ray_maps is not None:  # maps given (or made already): every step-th pixel of them
        return cond.ray_maps[:, :, : height * step : step, : width * step : step]
    # The image scaled by 1/step: each small pixel is the block of step x step it covers.
    K = np.array(cond.K, dtype=np.float64)
    K[:, :2] /= step
    return plucker_rays(K, cond.c2w, height, width, reference_c2w=cond.reference_c2w)


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
    *,
    arrays: bool = False,
) -> dict[str, Path]:
    """Write the preview files into ``out`` (all or nothing), concurrently. Returns their
    paths.

    ``extra_videos`` ({"pose.mp4": frames, ...}, (F,H,W,3) uint8 each) are written beside the
    others at the conditioning's frame rate: what another engine is driven by. ``arrays``: also
    conditioning.npz (the arrays themselves; large, so only on request)."""
    out = Path(out)
    extra_videos = extra_videos or {}
    names = [*PREVIEW_FILES, *([ARRAYS_FILE] if arrays else []), *extra_videos]
    # The normals first, on every core (the rasteriser shares frames out to threads), before the
    # encoders start: overlapping them gains nothing on a busy CPU and would slow each down.
    start = time.perf_counter()
    if arrays:
        cond.normals  # noqa: B018 (the npz needs the float maps: render them once, for both)
    normal_pictures = cond.normals_rgb()
    rendering = {"normals": time.perf_counter() - start}  # the rasteriser, inside the preview
    with staged_output_dir(out) as stage:

        def video(name: str, frames) -> Callable[[], object]:
            return lambda: write_video(
                stage / name, frames(), cond.fps, crf=PREVIEW_CRF, preset=PREVIEW_PRESET
            )

        # Longest first: the rays are the widest video.
        jobs = {
            "rays.mp4": video("rays.mp4", lambda: rays_to_rgb(browser_rays(cond))),
            "normals.mp4": video("normals.mp4", lambda: normal_pictures),
            "tracking.mp4": video(
                "tracking.mp4", lambda: (_even(f) for f in tracking_frames(cond, cond.height))
            ),
            **{
                name: video(name, lambda frames=frames: (_even(f) for f in frames))
                for name, frames in extra_videos.items()
            },
            "source.png": lambda: cv2.imwrite(
                str(stage / "source.png"),
                cv2.cvtColor(
                    draw_face_mesh(cond.reference, cond.source_landmarks), cv2.COLOR_RGB2BGR
                ),
            ),
        }
        if arrays:
            jobs[ARRAYS_FILE] = lambda: np.savez(stage / ARRAYS_FILE, **cond.arrays())
        start = time.perf_counter()
        seconds = {f"write {name}": spent for name, spent in _run_concurrently(jobs).items()}
        write_json(stage / "trajectory.json", trajectory_record(cond, trajectory))
        seconds["write files"] = time.perf_counter() - start
        summary = cond.report.to_dict()
        summary["seconds"] = {**cond.report.seconds, **rendering, **seconds}
        summary["files"] = names
        (stage / "summary.json").write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    return {name: out / name for name in names}


def write_videos(
    videos: dict[Path, object], fps: float, *, crf: int = PREVIEW_CRF, preset: str = PREVIEW_PRESET
) -> None:
    """Encode several videos at once ({path: (F,H,W,3) uint8 frames, an iterable of them, or a
    function that makes either}), one thread and one ffmpeg process each: what a caller writing
    a preview's videos without ``write_preview`` (the web service) uses to overlap them. A
    function is called on its video's thread, so making the frames overlaps the other
    encoders too."""
    _run_concurrently(
        {
            str(path): lambda path=path, frames=frames: write_video(
                path, frames() if callable(frames) else frames, fps, crf=crf, preset=preset
            )
            for path, frames in videos.items()
        }
    )


def _run_concurrently(jobs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Run every job on a thread of its own (encoding happens in ffmpeg processes and the
    compiled encoders release the GIL, so they overlap); seconds each took. Every job has
    ended before this returns or raises the first failure."""

    def timed(job):
        start = time.perf_counter()
        job()
        return time.perf_counter() - start

    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(timed, job) for name, job in jobs.items()}
    return {name: future.result() for name, future in futures.items()}


def _plain(value):
    """numpy scalars and arrays in the report -> JSON."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 yuv420p needs even sides: drop a last odd row/column."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]
