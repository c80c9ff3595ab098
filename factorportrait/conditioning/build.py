"""Inference's composition of the core: (portrait, driving clip, mode, trajectory, settings)
-> the Conditioning bundle the model consumes, all on the CPU (stages in ``stages.py``).

    portrait --source--> framed reference, template head, the reference camera (world = its head)
    driving  --driving--> tracked, smoothed clip at the output times; heads in our camera model
    mode + trajectory --cameras--> K, c2w per output frame
    driving heads --head poses--> retargeted onto the portrait, in the world
    pose x cameras --normals--> where the face lands; normal maps + mask rendered when first
        read (Conditioning.normals: a preview renders only their colours);  driving crops
        --expression--> blendshapes, crops, landmarks;  cameras --rays--> Plücker maps relative
        to the reference camera, made when first read (Conditioning.rays): a preview draws them
        smaller
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import CAMERA, LATENT, LIMITS, VIDEO
from ..errors import InputError
from ..io.media import VideoFrames, read_image, read_video
from ..tracking import FaceTracker
from ..viewpoint import Trajectory
from .bundle import Conditioning, ConditioningSettings
from .report import ConditioningReport, DrivingFile
from .stages import (
    assemble,
    driven_head_poses,
    driving_stage,
    explicit_cameras,
    expression_stage,
    mode_cameras,
    normals_stage,
    source_stage,
)

_kernels_lock = threading.Lock()
_kernels_loading: threading.Thread | None = None


def start_loading_kernels() -> None:
    """Load the compiled loops of the normals, rays and their pictures on a thread of their own,
    once per process: a fresh process spends about half a second starting numba's compiler
    and reading them from its disk cache, which this does while the portrait is read and the
    face tracker starts (MediaPipe releases the GIL while it works)."""
    global _kernels_loading
    with _kernels_lock:
        if _kernels_loading is None:
            _kernels_loading = threading.Thread(
                target=_run_kernels_once, name="load-compiled-kernels", daemon=True
            )
            _kernels_loading.start()


def _run_kernels_once() -> None:
    """Each compiled loop once, on a tiny input."""
    from ..head_pose.rasterizer import normals_to_rgb, rasterize
    from ..viewpoint import plucker_rays, rays_to_rgb

    K = np.array([[[2.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]])
    c2w = np.eye(4)[None].copy()
    c2w[0, 2, 3] = -10.0
    rays_to_rgb(plucker_rays(K, c2w, 2, 2, reference_c2w=c2w[0]))
    triangle = np.array([[[-1.0, -1.0, 5.0], [1.0, -1.0, 5.0], [0.0, 1.0, 5.0]]])
    render = rasterize(
        triangle, np.tile([0.0, 0.0, -1.0], (1, 3, 1)), np.array([[0, 2, 1]]), K, 2, 2
    )
    normals_to_rgb(render.normals, render.mask)


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def build_conditioning(
    portrait: str | Path | np.ndarray,
    driving: str | Path | VideoFrames | None = None,
    *,
    settings: ConditioningSettings | None = None,
    trajectory: Trajectory | None = None,
    tracker: FaceTracker | None = None,
    landmarker_path: str | Path | None = None,
    cameras: tuple[np.ndarray, np.ndarray] | None = None,
    driving_cameras: np.ndarray | None = None,
) -> Conditioning:
    """One call from inputs to the Conditioning bundle. Raises InputError on bad input.

    For recorded data (what training's samples are built from), two optional inputs:
    cameras: (K (F,3,3), relative (F,4,4)) explicit output cameras, each relative to the
        reference camera with translation in cm; replaces the mode's camera path.
    driving_cameras: (F,4,4) the cameras that filmed the driving clip, relative to the
        reference camera (cm); the driving head's motion is then taken in the world, not as
        seen by a still camera.
    """
    settings = (settings or ConditioningSettings()).validated()
    start_loading_kernels()
    mode = settings.mode
    if driving is None and mode.needs_driving:
        raise InputError(f"mode {mode}: a driving video is needed (only camera-only works without)")
    timer = _Timer()
    report = ConditioningReport(mode=str(mode))
    own_tracker = tracker is None
    tracker = tracker or FaceTracker(landmarker_path)
    try:
        with timer("read portrait"):
            image = portrait if isinstance(portrait, np.ndarray) else read_image(portrait)
        with timer("source"):
            source = source_stage(
                image, tracker, settings.height, settings.width, report, settings.framing_scale
            )
            # Where the reference was cut from the photo (image -> reference pixels), for reports.
            report.reference_crop = source.crop.tolist()
        driving_clip = None
        frames_out = settings.frames or VIDEO.frames
        if driving is not None:
            with timer("read driving"):
                # Only as much of the clip as the output can use (plus a frame's margin).
                needed = (settings.frames or LIMITS.max_frames) / settings.fps + 0.25
                video = (
                    driving
                    if isinstance(driving, VideoFrames)
                    else read_video(driving, until_s=needed)
                )
            if mode.drives_head:  # an intro or a title card before the face: start at the face
                with timer("find face"):
                    video = _from_first_face(video, driving, needed, tracker, report)
            with timer("read driving"):
                frames_out, picks = _output_frames(video, settings, report)
            if mode.drives_head:  # camera-only never looks at the clip's faces
                with timer("track driving"):
                    driving_clip = driving_stage(
                        video.frames[picks],
                        np.arange(frames_out) / settings.fps,
                        tracker,
                        source.template,
                        settings.height,
                        settings.width,
                        smoothing=settings.smoothing,
                        report=report,
                        crop_scale=settings.framing_scale,
                    )
        with timer("cameras"):
            if cameras is None:
                K, c2w = mode_cameras(settings, trajectory, frames_out, source.c2w)
            else:
                K, c2w = explicit_cameras(cameras, frames_out, source.c2w)
        with timer("head pose"):
            head_pose = driven_head_poses(
                driving_clip, source, frames_out, settings, driving_cameras
            )
        with timer("face points"):  # the normal maps: rendered when first read
            normals = normals_stage(
                source.template, head_pose, K, c2w, settings.height, settings.width, render=False
            )
        with timer("expression"):
            expression = expression_stage(driving_clip, image, source, frames_out, settings)
    finally:
        if own_tracker:
            tracker.close()
    report.frames, report.fps = frames_out, settings.fps
    report.height, report.width = settings.height, settings.width
    report.seconds = timer.seconds
    report.portrait_camera = {
        "fov_deg": CAMERA.fov_deg,
        "distance_cm": float(np.linalg.norm(source.c2w[:3, 3])),
    }
    return assemble(
        mode,
        settings.fps,
        source,
        K,
        c2w,
        head_pose,
        normals,
        None,  # the ray maps: made from the cameras when first read
        expression,
        tracker.blendshape_names or [],
        report,
        driving_clip,
    )


# How densely the start of a clip is searched for its first face (frames per second).
FACE_SEARCH_RATE = 4.0


def _first_face_time(video: VideoFrames, tracker: FaceTracker) -> float | None:
    """When a face first shows (seconds from the clip's first frame kept), or None: a few frames
    a second, then frame by frame back from the first hit."""
    times = video.times
    stride = max(1, int(round(len(times) / max(video.duration, 1e-6) / FACE_SEARCH_RATE)))
    for index in range(0, len(times), stride):
        if tracker.track_image(video.frames[index]) is not None:
            first = index
            for earlier in range(index - 1, max(index - stride, -1), -1):
                if tracker.track_image(video.frames[earlier]) is None:
                    break
                first = earlier
            return float(times[first] - times[0])
    return None


def _from_first_face(
    video: VideoFrames,
    driving: str | Path | VideoFrames,
    needed_s: float,
    tracker: FaceTracker,
    report: ConditioningReport,
) -> VideoFrames:
    """The driving clip from the first frame with a face, and a warning saying from when; the
    clip unchanged when the face is there from the start (or nowhere: the tracking stage says
    so). Past the part read so far, a file is searched a few frames a second, small."""
    start = _first_face_time(video, tracker)
    if start is None and not isinstance(driving, VideoFrames):
        step = 1 / FACE_SEARCH_RATE
        windows = [(k * step, k * step + 0.05) for k in range(int(LIMITS.max_video_seconds / step))]
        sparse = read_video(driving, max_side=256, ranges_s=windows)
        if len(sparse.times) and (found := _first_face_time(sparse, tracker)) is not None:
            # Found between two probes: read from the one before, at full size, and pin it.
            around = max(0.0, float(sparse.times[0]) + found - step)
            video = read_video(driving, ranges_s=[(around, around + step + needed_s)])
            if (within := _first_face_time(video, tracker)) is not None:
                start = float(video.times[0]) + within
    if not start:
        return video
    if isinstance(driving, VideoFrames) or video.times[0] > start:
        keep = video.times >= start - 1e-6
        frames, times = video.frames[keep], video.times[keep]
    else:  # read again from the face on, as much as the output can use
        video = read_video(driving, ranges_s=[(start, start + needed_s)])
        frames, times = video.frames, video.times
    report.warnings.append(
        f"driving video: no face before {start:.1f} s (an intro or a title card?); "
        f"the driving starts there"
    )
    return replace(video, frames=frames, times=times - times[0], frame_indices=None)


def _output_frames(
    video: VideoFrames, settings: ConditioningSettings, report: ConditioningReport
) -> tuple[int, np.ndarray]:
    """How many output frames, and which decoded frame each one shows (nearest in time)."""
    available = int(np.floor(video.times[-1] * settings.fps + 1e-6)) + 1
    if settings.frames is not None:
        frames = settings.frames
    else:
        frames = min(available, LIMITS.max_frames)
        frames = LATENT.trimmed(frames)
    if frames < available and settings.frames is None:
        why = "4k+1 frames, as the video model needs" if frames < LIMITS.max_frames else "the limit"
        report.warnings.append(
            f"driving video gives {available} frames at {settings.fps:g} fps: the output uses "
            f"the first {frames} ({why})"
        )
    if frames > available:
        report.warnings.append(
            f"driving video gives {available} frames at {settings.fps:g} "
            f"fps: the last is held for the remaining {frames - available}"
        )
    times = np.minimum(np.arange(frames) / settings.fps, video.times[-1])
    picks = np.abs(video.times[None, :] - times[:, None]).argmin(axis=1)
    report.driving_file = DrivingFile(
        decoded_frames=len(video.times),
        duration_s=video.duration,
        declared_fps=video.declared_fps,
        rotation=video.rotation,
        has_audio=video.has_audio,
    )
    return frames, picks
