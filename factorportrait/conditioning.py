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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from . import MODES
from .camera import Trajectory, load_preset, plucker_rays
from .config import CAMERA, LIMITS, VIDEO, check_fps, check_frame_count, check_size
from .errors import InputError
from .expression import CROP_SIZE, aligned_crops, landmarks_in_crops
from .face_model import load_canonical_face
from .head_mesh import HeadTemplate, build_head_template, fit_proportions
from .io.media import VideoFrames, read_image, read_video
from .pose import camera_path, estimate_portrait_camera, retarget_head_poses
from .render import rasterize
from .tracking import (
    FaceObservation,
    FaceTracker,
    assemble_clip,
    landmark_jitter,
    smooth_clip,
)

Mode = Literal["frontal-dynamic", "novel-dynamic", "camera-only", "all-dynamic"]
DEFAULT_TRAJECTORY = "orbit"
# The square around the face that becomes the reference frame: face box x this factor.
PORTRAIT_CROP_SCALE = 2.0


@dataclass(frozen=True)
class ConditioningSettings:
    """Everything but the media. Immutable: one per request, never shared state."""

    mode: Mode = "frontal-dynamic"
    frames: int | None = None  # None: from the driving clip (4k+1), or the default
    fps: float = VIDEO.fps
    height: int = VIDEO.height
    width: int = VIDEO.width
    smoothing: bool = True
    relative_pose: bool = True
    pose_strength: float = 1.0
    # novel-dynamic: the static view, as offsets from the portrait's own view
    novel_azimuth: float = 30.0
    novel_elevation: float = 0.0
    novel_distance: float = 1.0
    crop_size: int = CROP_SIZE

    def validated(self) -> ConditioningSettings:
        if self.mode not in MODES:
            raise InputError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        if self.frames is not None:
            check_frame_count(self.frames)
        check_fps(self.fps)
        check_size(self.height, self.width)
        if not 0.0 <= self.pose_strength <= 2.0:
            raise InputError(f"pose strength: {self.pose_strength} is outside [0, 2]")
        return self


@dataclass
class Conditioning:
    """Per-frame conditions for F output frames of H x W (README: The model and the pipeline)."""

    mode: str
    fps: float
    reference: np.ndarray  # (H, W, 3) uint8: the portrait, cropped and framed like the output
    normals: np.ndarray  # (F, H, W, 3) float32 camera-space unit normals, 0 on the background
    mask: np.ndarray  # (F, H, W) bool
    rays: np.ndarray  # (F, 6, H, W) float32 Plücker [o x d, d]
    K: np.ndarray  # (F, 3, 3)
    c2w: np.ndarray  # (F, 4, 4) world = portrait head frame, cm
    head_pose: np.ndarray  # (F, 4, 4) head -> world
    blendshapes: np.ndarray  # (F, 52)
    blendshape_names: list[str]
    crops: np.ndarray  # (F, s, s, 3) uint8 aligned face crops for the expression encoder
    crop_landmarks: np.ndarray  # (F, 478, 2) landmarks in those crops, in [0, 1] (C3 ablation)
    source_landmarks: np.ndarray  # (478, 3) in reference pixels
    face_pixels: np.ndarray  # (F, 468, 2) where each template face vertex lands in each frame
    driving_frames: np.ndarray | None = None  # (F, h, w, 3) uint8, resampled to the output
    driving_landmarks: np.ndarray | None = None  # (F, 478, 3) in driving pixels
    report: dict = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return len(self.c2w)

    @property
    def height(self) -> int:
        return self.reference.shape[0]

    @property
    def width(self) -> int:
        return self.reference.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        """The npz payload (names as documented in the README)."""
        return {
            "reference": self.reference,
            "normals": self.normals,
            "mask": self.mask,
            "rays": self.rays,
            "K": self.K.astype(np.float32),
            "c2w": self.c2w.astype(np.float32),
            "head_pose": self.head_pose.astype(np.float32),
            "blendshapes": self.blendshapes.astype(np.float32),
            "blendshape_names": np.array(self.blendshape_names),
            "crops": self.crops,
            "crop_landmarks": self.crop_landmarks.astype(np.float32),
            "source_landmarks": self.source_landmarks.astype(np.float32),
            "face_pixels": self.face_pixels.astype(np.float32),
            "fps": np.float32(self.fps),
            "mode": np.array(self.mode),
        }


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
    settings: ConditioningSettings = ConditioningSettings(),
    trajectory: Trajectory | None = None,
    tracker: FaceTracker | None = None,
    landmarker_path: str | Path | None = None,
) -> Conditioning:
    """One call from inputs to the Conditioning bundle. Raises InputError on bad input."""
    settings = settings.validated()
    mode = settings.mode
    if driving is None and mode != "camera-only":
        raise InputError(f"mode {mode}: a driving video is needed (only camera-only works without)")
    timer = _Timer()
    report: dict = {"mode": mode, "warnings": []}
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
            if clip is None or mode == "camera-only":
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
            if clip is None or mode == "camera-only":
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
        driving_frames=frames if mode != "camera-only" else None,
        driving_landmarks=clip.landmarks if clip is not None and mode != "camera-only" else None,
        report=report,
    )


def render_head(
    template: HeadTemplate,
    head_pose: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    height: int,
    width: int,
):
    """Normal maps of the posed template head (and the fixed neck) from each camera."""
    w2c = np.linalg.inv(c2w)
    head_to_cam = w2c @ head_pose
    rot_h, t_h = head_to_cam[:, :3, :3], head_to_cam[:, :3, 3]
    rot_b, t_b = w2c[:, :3, :3], w2c[:, :3, 3]
    vertices = np.concatenate(
        [
            np.einsum("fij,vj->fvi", rot_h, template.head_vertices) + t_h[:, None],
            np.einsum("fij,vj->fvi", rot_b, template.body_vertices) + t_b[:, None],
        ],
        axis=1,
    )
    normals = np.concatenate(
        [
            np.einsum("fij,vj->fvi", rot_h, template.head_normals),
            np.einsum("fij,vj->fvi", rot_b, template.body_normals),
        ],
        axis=1,
    )
    faces = np.concatenate([template.head_faces, template.body_faces + len(template.head_vertices)])
    return rasterize(vertices, normals, faces, K, height, width)


def project_points(
    points: np.ndarray, head_pose: np.ndarray, K: np.ndarray, c2w: np.ndarray
) -> np.ndarray:
    """Head-frame points (P,3) posed per frame and projected: (F, P, 2) pixels."""
    head_to_cam = np.linalg.inv(c2w) @ head_pose
    cam = np.einsum("fij,pj->fpi", head_to_cam[:, :3, :3], points) + head_to_cam[:, None, :3, 3]
    pixels = np.einsum("fij,fpj->fpi", K, cam)
    return pixels[..., :2] / pixels[..., 2:]


def track_portrait(tracker: FaceTracker, image: np.ndarray, report: dict) -> FaceObservation:
    # Very large photos are tracked on a downscaled copy (the detector works at low resolution).
    scale = min(1.0, LIMITS.max_image_side_tracked / max(image.shape[:2]))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image,
            (round(image.shape[1] * scale), round(image.shape[0] * scale)),
            interpolation=cv2.INTER_AREA,
        )
    )
    face = tracker.track_image(small)
    if face is None:
        raise InputError("portrait: no face found (use a photo with one clearly visible face)")
    if scale != 1.0:
        face = face.scaled(1.0 / scale, (0.0, 0.0))
    report["portrait_faces_found"] = face.faces_found
    if face.faces_found > 1:
        report["warnings"].append(f"{face.faces_found} faces in the portrait: using the largest")
    return face


def frame_portrait(
    image: np.ndarray, face: FaceObservation, height: int, width: int
) -> tuple[np.ndarray, FaceObservation, np.ndarray]:
    """Crop the portrait around the face to the output's aspect and size (padding with the
    edge colour where the crop leaves the photo); the face's landmarks follow. Also returns
    the 2x3 image -> reference matrix."""
    matrix = framing_matrix(face.box, height, width)
    reference = cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    scale = matrix[0, 0]
    return reference, face.scaled(scale, (-matrix[0, 2] / scale, -matrix[1, 2] / scale)), matrix


def framing_matrix(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """The 2x3 image -> output matrix that frames a face box (x0, y0, x1, y1) like a portrait:
    a square of twice the face's size, centred a little above it (room for the hair)."""
    x0, y0, x1, y1 = box
    crop_h = max(x1 - x0, y1 - y0) * PORTRAIT_CROP_SCALE
    crop_w = crop_h * width / height
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0)
    left, top = centre_x - crop_w / 2, centre_y - crop_h / 2
    scale = width / crop_w
    return np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])


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
    if settings.mode == "frontal-dynamic":
        return camera_path(Trajectory.static(), frames, c2w_src, h, w)
    if settings.mode == "novel-dynamic":
        view = Trajectory.static(
            settings.novel_azimuth,
            settings.novel_elevation,
            settings.novel_distance,
            name="novel-view",
        )
        return camera_path(view, frames, c2w_src, h, w)
    return camera_path(trajectory or load_preset(DEFAULT_TRAJECTORY), frames, c2w_src, h, w)
