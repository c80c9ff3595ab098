"""The factorised core: from (portrait, driving clip, mode, trajectory, settings) to the
Conditioning bundle the model consumes (README: Status), all on the CPU.

    portrait --track--> source face --> template head, portrait camera, reference crop
    driving  --track--> per-frame pose + expression (gaps filled, smoothed, resampled)
    mode + trajectory --> camera path (K, c2w per output frame)
    pose x cameras --rasterise--> normal maps + mask;  cameras --> Plücker rays
    driving crops --> expression crops;  blendshapes --> expression code (CPU)
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..config import CAMERA, LIMITS, VIDEO
from ..errors import InputError
from ..expression import aligned_crops, landmarks_in_crops
from ..framing import estimate_portrait_camera, frame_portrait, track_portrait
from ..head_pose import (
    build_head_template,
    fit_proportions,
    load_canonical_face,
    project_points,
    render_head,
    retarget_head_poses,
)
from ..io.media import VideoFrames, read_image, read_video
from ..tracking import FaceTracker, assemble_clip, landmark_jitter, smooth_clip
from ..viewpoint import Trajectory, load_preset, plucker_rays
from ..viewpoint.paths import camera_path
from .bundle import Conditioning, ConditioningSettings

DEFAULT_TRAJECTORY = "orbit"


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
) -> Conditioning:
    """One call from inputs to the Conditioning bundle. Raises InputError on bad input."""
    settings = (settings or ConditioningSettings()).validated()
    mode = settings.mode
    if driving is None and mode.needs_driving:
        raise InputError(f"mode {mode}: a driving video is needed (only camera-only works without)")
    timer = _Timer()
    report: dict = {"mode": str(mode), "warnings": []}
    own_tracker = tracker is None
    tracker = tracker or FaceTracker(landmarker_path)
    try:
        with timer("read portrait"):
            image = portrait if isinstance(portrait, np.ndarray) else read_image(portrait)
        with timer("track portrait"):
            source = track_portrait(tracker, image, report)
        with timer("template head"):
            canonical = load_canonical_face(str(tracker.model_path))
            reference, face, crop = frame_portrait(image, source, settings.height, settings.width)
            # Where the reference was cut from the photo (image -> reference pixels), for reports.
            report["reference_crop"] = crop.tolist()
            template = build_head_template(canonical, fit_proportions(canonical, face.landmarks))
            K_src, c2w_src = estimate_portrait_camera(
                face, template.face_vertices, settings.height, settings.width
            )
        clip = frames = None
        if driving is not None:
            with timer("read driving"):
                # Only as much of the clip as the output can use (plus a frame's margin).
                needed = (settings.frames or LIMITS.max_frames) / settings.fps + 0.25
                video = (
                    driving
                    if isinstance(driving, VideoFrames)
                    else read_video(driving, until_s=needed)
                )
            frames_out, picks = _output_frames(video, settings, report)
            with timer("track driving"):
                observations = tracker.track_frames(video.frames[picks], video.times[picks])
                clip = assemble_clip(observations, np.arange(frames_out) / settings.fps)
                report["driving_faces_tracked"] = int(clip.tracked.sum())
                report["driving_frames_filled"] = clip.filled
                if clip.filled:
                    report["warnings"].append(
                        f"face lost in {clip.filled} of {frames_out} driving frames: filled in"
                    )
                if clip.faces_found.max() > 1:
                    report["warnings"].append(
                        "several faces in the driving video: following the largest"
                    )
                report["jitter_px_raw"] = landmark_jitter(clip.landmarks)
                if settings.smoothing:
                    clip = smooth_clip(clip)
                report["jitter_px"] = landmark_jitter(clip.landmarks)
                frames = video.frames[picks]
        else:
            frames_out = settings.frames or VIDEO.frames
        with timer("cameras"):
            K, c2w = _camera_path(settings, trajectory, frames_out, c2w_src)
        with timer("head pose"):
            if clip is None or not mode.drives_head:
                head_pose = np.tile(np.eye(4), (frames_out, 1, 1))
            else:
                head_pose = retarget_head_poses(
                    clip.rotations,
                    clip.translations,
                    c2w_src,
                    relative=settings.relative_pose,
                    strength=settings.pose_strength,
                )
        with timer("normals"):
            render = render_head(template, head_pose, K, c2w, settings.height, settings.width)
            face_pixels = project_points(template.face_vertices, head_pose, K, c2w)
        with timer("rays"):
            rays = plucker_rays(K, c2w, settings.height, settings.width)
        with timer("expression"):
            names = tracker.blendshape_names or []
            if clip is None or not mode.drives_head:
                blendshapes = np.repeat(source.blendshapes[None], frames_out, 0)
                landmarks = np.repeat(source.landmarks[None], frames_out, 0)
                crops = np.repeat(
                    aligned_crops(image[None], source.landmarks[None], settings.crop_size),
                    frames_out,
                    0,
                )
            else:
                blendshapes = clip.blendshapes
                landmarks = clip.landmarks
                crops = aligned_crops(frames, clip.landmarks, settings.crop_size)
            crop_landmarks = landmarks_in_crops(landmarks, settings.crop_size)
    finally:
        if own_tracker:
            tracker.close()
    report.update(
        frames=frames_out,
        fps=settings.fps,
        height=settings.height,
        width=settings.width,
        seconds=timer.seconds,
        portrait_camera={
            "fov_deg": CAMERA.fov_deg,
            "distance_cm": float(np.linalg.norm(c2w_src[:3, 3])),
        },
    )
    return Conditioning(
        mode=mode,
        fps=settings.fps,
        reference=reference,
        normals=render.normals,
        mask=render.mask,
        rays=rays,
        K=K,
        c2w=c2w,
        head_pose=head_pose,
        blendshapes=blendshapes,
        blendshape_names=names,
        crop_landmarks=crop_landmarks,
        crops=crops,
        source_landmarks=face.landmarks,
        face_pixels=face_pixels,
        driving_frames=frames if mode.drives_head else None,
        driving_landmarks=clip.landmarks if clip is not None and mode.drives_head else None,
        report=report,
    )


def _output_frames(
    video: VideoFrames, settings: ConditioningSettings, report: dict
) -> tuple[int, np.ndarray]:
    """How many output frames, and which decoded frame each one shows (nearest in time)."""
    available = int(np.floor(video.times[-1] * settings.fps + 1e-6)) + 1
    if settings.frames is not None:
        frames = settings.frames
    else:
        frames = min(available, LIMITS.max_frames)
        frames -= (frames - 1) % 4  # trim to 4k+1
    if frames > available:
        report["warnings"].append(
            f"driving video gives {available} frames at {settings.fps:g} "
            f"fps: the last is held for the remaining {frames - available}"
        )
    times = np.minimum(np.arange(frames) / settings.fps, video.times[-1])
    picks = np.abs(video.times[None, :] - times[:, None]).argmin(axis=1)
    report["driving"] = {
        "decoded_frames": len(video.times),
        "duration_s": video.duration,
        "declared_fps": video.declared_fps,
        "rotation": video.rotation,
        "has_audio": video.has_audio,
    }
    return frames, picks


def _camera_path(
    settings: ConditioningSettings, trajectory: Trajectory | None, frames: int, c2w_src: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = settings.height, settings.width
    if not settings.mode.moving_camera and not settings.mode.novel_view:
        return camera_path(Trajectory.static(), frames, c2w_src, h, w)
    if settings.mode.novel_view:
        view = Trajectory.static(
            settings.novel_azimuth,
            settings.novel_elevation,
            settings.novel_distance,
            name="novel-view",
        )
        return camera_path(view, frames, c2w_src, h, w)
    return camera_path(trajectory or load_preset(DEFAULT_TRAJECTORY), frames, c2w_src, h, w)
