"""The named stages of the conditioning core. ``build_conditioning`` (inference) and training's
sample builder (``factorportrait.training.samples``) compose these same functions, so a trained
model sees at inference the same function of the same content it learnt from
(ARCHITECTURE.md: The conditioning core).

    source      reference image -> tracked, framed face; template head; the reference camera
    driving     frames at the output times -> tracked, smoothed clip; jitter report; each
                frame's head placed for our camera model (the clip framed like a portrait)
    cameras     the mode's camera path (inference) or the recorded cameras (training)
    head poses  driving heads retargeted onto the portrait, in the world (= reference head frame)
    normals     the posed template rendered from each camera (+ mask, projected face points)
    rays        Plücker maps relative to the reference camera
    expression  blendshapes, aligned face crops and the landmarks in them

The world is the head frame of the reference image: its head pose is the identity and its
camera (``Source.c2w``) is what the reference image shows. Every framed image (the reference,
a driving or target clip) is treated as seen by our default camera (``CAMERA.fov_deg`` over
the crop); head translations are solved for that camera, never taken from MediaPipe's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CAMERA
from ..errors import InputError
from ..expression import aligned_crops, head_frame_landmarks
from ..head_pose import (
    HeadTemplate,
    build_head_template,
    fit_proportions,
    load_canonical_face,
    place_heads,
    project_points,
    render_head,
    retarget_head_poses,
)
from ..head_pose.rasterizer import NormalRender
from ..tracking import (
    FaceObservation,
    FaceTracker,
    TrackedClip,
    assemble_clip,
    landmark_jitter,
    smooth_clip,
)
from ..viewpoint import Trajectory, intrinsics_from_fov, invert_rigid, load_preset, plucker_rays
from ..viewpoint.paths import camera_path
from .bundle import Conditioning, ConditioningSettings
from .framing import (
    PORTRAIT_CROP_SCALE,
    clip_framing,
    estimate_portrait_camera,
    frame_portrait,
    track_portrait,
)
from .report import ClipTracking, ConditioningReport

DEFAULT_TRAJECTORY = "orbit"


@dataclass(frozen=True)
class Source:
    """The reference image, tracked and framed, with the head and camera built from it."""

    reference: np.ndarray  # (H, W, 3) uint8: the image framed like the output
    face: FaceObservation  # tracked, in reference pixels
    photo_face: FaceObservation  # tracked, in the photo's pixels (for expression crops)
    crop: np.ndarray  # (2, 3) photo -> reference pixels
    template: HeadTemplate
    K: np.ndarray  # (3, 3) the reference camera's intrinsics
    c2w: np.ndarray  # (4, 4) the reference camera; world = the reference's head frame


def source_stage(
    image: np.ndarray,
    tracker: FaceTracker,
    height: int,
    width: int,
    report: ConditioningReport,
    crop_scale: float = PORTRAIT_CROP_SCALE,
) -> Source:
    photo_face = track_portrait(tracker, image, report)
    reference, face, crop = frame_portrait(image, photo_face, height, width, crop_scale)
    canonical = load_canonical_face(str(tracker.model_path))
    template = build_head_template(canonical, fit_proportions(canonical, face.landmarks))
    K, c2w = estimate_portrait_camera(face, template.face_vertices, height, width)
    return Source(reference, face, photo_face, crop, template, K, c2w)


@dataclass(frozen=True)
class Driving:
    """A tracked clip at the output times, and its heads placed for our camera model."""

    frames: np.ndarray  # (F, h, w, 3) uint8 the clip's frames as decoded
    clip: TrackedClip  # gaps filled, smoothed unless asked not to; landmarks in clip pixels
    framing: np.ndarray  # (2, 3) clip -> framed pixels: one portrait crop for the whole clip
    head_to_camera: np.ndarray  # (F, 4, 4) each frame's head in our camera over that crop, cm

    @property
    def framed_landmarks(self) -> np.ndarray:
        """(F, 478, 2) landmarks in the framed pixels."""
        return self.clip.landmarks[..., :2] * self.framing[0, 0] + self.framing[:, 2]


def driving_stage(
    frames: np.ndarray,
    times: np.ndarray,
    tracker: FaceTracker,
    template: HeadTemplate,
    height: int,
    width: int,
    *,
    smoothing: bool,
    report: ConditioningReport,
    name: str = "driving video",
    key: str = "driving",
    max_filled_fraction: float | None = None,
    crop_scale: float = PORTRAIT_CROP_SCALE,
) -> Driving:
    """Track, fill gaps, report jitter, smooth; then frame the clip like a portrait and place
    each frame's head for our camera model (``place_heads`` with the reference's template).

    max_filled_fraction: refuse the clip when more of its frames than this had no face (a
    training target must be mostly real); None: fill and warn (inference)."""
    count = len(frames)
    clip = assemble_clip(tracker.track_frames(frames, times), times, name=name)
    if max_filled_fraction is not None and clip.filled > count * max_filled_fraction:
        raise InputError(f"{name}: the face is lost in {clip.filled} of {count} frames")
    if clip.filled:
        report.warnings.append(f"face lost in {clip.filled} of {count} {key} frames: filled in")
    if clip.faces_found.max() > 1:
        report.warnings.append(f"several faces in the {name}: following the largest")
    jitter_raw = landmark_jitter(clip.landmarks)
    faces_tracked = int(clip.tracked.sum())
    if smoothing:
        clip = smooth_clip(clip)
    report.clip = ClipTracking(
        faces_tracked, clip.filled, jitter_raw, landmark_jitter(clip.landmarks)
    )
    framing = clip_framing(clip.landmarks[0], height, width, crop_scale)
    framed = clip.landmarks[..., :2] * framing[0, 0] + framing[:, 2]
    K = intrinsics_from_fov(CAMERA.fov_deg, height, width)
    head_to_camera = place_heads(clip.rotations, framed, template.face_vertices, K, name=name)
    return Driving(frames, clip, framing, head_to_camera)


def mode_cameras(
    settings: ConditioningSettings,
    trajectory: Trajectory | None,
    frames: int,
    reference_c2w: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """K (F,3,3) and c2w (F,4,4) of the output frames for the mode: the reference camera held
    (frontal), a chosen view held (novel), or a trajectory flown from the reference camera."""
    mode, h, w = settings.mode, settings.height, settings.width
    if mode.novel_view:
        view = Trajectory.static(
            settings.novel_azimuth,
            settings.novel_elevation,
            settings.novel_distance,
            name="novel-view",
        )
        return camera_path(view, frames, reference_c2w, h, w)
    if not mode.moving_camera:  # the reference camera itself, exactly: identity rays
        K = intrinsics_from_fov(CAMERA.fov_deg, h, w)
        return np.repeat(K[None], frames, axis=0), np.repeat(reference_c2w[None], frames, axis=0)
    path = trajectory or load_preset(DEFAULT_TRAJECTORY)
    return camera_path(path, frames, reference_c2w, h, w)


def explicit_cameras(
    cameras: tuple[np.ndarray, np.ndarray], frames: int, reference_c2w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Given cameras (K (F,3,3), each camera relative to the reference camera (F,4,4), cm) ->
    K and world c2w. Recorded data's cameras (training) or a caller's own."""
    K, relative = (np.asarray(a, dtype=np.float64) for a in cameras)
    if K.shape != (frames, 3, 3) or relative.shape != (frames, 4, 4):
        raise InputError(
            f"cameras: expected K ({frames}, 3, 3) and relative c2w ({frames}, 4, 4), got "
            f"{K.shape} and {relative.shape}"
        )
    if not (np.isfinite(K).all() and np.isfinite(relative).all()):
        raise InputError("cameras: K and c2w must be finite")
    return K, reference_c2w @ relative


def driven_head_poses(
    driving: Driving | None,
    source: Source,
    frames: int,
    settings: ConditioningSettings,
    driving_cameras: np.ndarray | None = None,
) -> np.ndarray:
    """(F,4,4) head -> world: the driving heads retargeted onto the portrait, as the portrait's
    camera would see them; the identity (the head as in the photo) when the mode does not
    drive the head. driving_cameras (F,4,4): the cameras that filmed the driving clip relative
    to the reference camera (recorded data): each head is then placed in front of the camera
    that saw it, so camera motion is not mistaken for head motion."""
    if driving is None or not settings.mode.drives_head:
        return np.tile(np.eye(4), (frames, 1, 1))
    poses = retarget_head_poses(
        driving.head_to_camera,
        source.c2w,
        source.K,
        relative=settings.relative_pose,
        strength=settings.pose_strength,
    )
    if driving_cameras is None:
        return poses
    seen = invert_rigid(source.c2w) @ poses  # head -> the camera that saw it
    return heads_in_world(seen, source.c2w @ np.asarray(driving_cameras, dtype=np.float64))


def heads_in_world(head_to_camera: np.ndarray, camera_c2w: np.ndarray) -> np.ndarray:
    """(F,4,4) head -> world for heads seen by cameras at ``camera_c2w`` ((4,4) or (F,4,4))."""
    return np.asarray(camera_c2w) @ head_to_camera


@dataclass(frozen=True)
class Normals:
    render: NormalRender | None  # normals (F,H,W,3) + mask (F,H,W); None: rendered when read
    face_pixels: np.ndarray  # (F, 468, 2) where each template face vertex lands
    template: HeadTemplate  # the head they are (or will be) rendered from


def normals_stage(
    template: HeadTemplate,
    head_pose: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    h: int,
    w: int,
    *,
    render: bool = True,
) -> Normals:
    """Where the template's face lands in each frame and, unless ``render=False``, the normal
    maps and mask (no depth maps). Unrendered, the Conditioning renders them when they are
    first read, and a preview renders only their colours (``Conditioning.normals_rgb``)."""
    maps = render_head(template, head_pose, K, c2w, h, w, depth=False) if render else None
    return Normals(maps, project_points(template.face_vertices, head_pose, K, c2w), template)


def rays_stage(K: np.ndarray, c2w: np.ndarray, reference_c2w: np.ndarray, h: int, w: int):
    """Plücker maps (F,6,H,W) relative to the camera of the reference image."""
    return plucker_rays(K, c2w, h, w, reference_c2w=reference_c2w)


@dataclass(frozen=True)
class Expression:
    blendshapes: np.ndarray  # (F, 52)
    crops: np.ndarray  # (F, s, s, 3) uint8 aligned face crops (the encoder's input)
    # (F, 478, 2) the C3 ablation's codes: the landmarks in the head's own frame, in face sizes
    # (the name kept: prepared samples store them under it)
    crop_landmarks: np.ndarray
    landmarks: np.ndarray  # (F, 478, 3) in the frames' own pixels


def expression_stage(
    driving: Driving | None,
    source_image: np.ndarray,
    source: Source,
    frames: int,
    settings: ConditioningSettings,
) -> Expression:
    """The driving clip's expressions, or the portrait's own held still when the mode does not
    drive the face."""
    if driving is None or not settings.mode.drives_head:
        face = source.photo_face
        crop = aligned_crops(source_image[None], face.landmarks[None], settings.crop_size)
        blendshapes = np.repeat(face.blendshapes[None], frames, 0)
        landmarks = np.repeat(face.landmarks[None], frames, 0)
        crops = np.repeat(crop, frames, 0)
    else:
        blendshapes = driving.clip.blendshapes
        landmarks = driving.clip.landmarks
        crops = aligned_crops(driving.frames, landmarks, settings.crop_size)
    return Expression(blendshapes, crops, head_frame_landmarks(landmarks), landmarks)


def assemble(
    mode,
    fps: float,
    source: Source,
    K: np.ndarray,
    c2w: np.ndarray,
    head_pose: np.ndarray,
    normals: Normals,
    rays: np.ndarray | None,
    expression: Expression,
    blendshape_names: list[str],
    report: ConditioningReport,
    driving: Driving | None = None,
) -> Conditioning:
    """The stages' results as one Conditioning bundle (inference and training alike). Rays
    None: made from the cameras when first read (``Conditioning.rays``)."""
    return Conditioning(
        mode=mode,
        fps=fps,
        reference=source.reference,
        normal_maps=None if normals.render is None else normals.render.normals,
        normal_mask=None if normals.render is None else normals.render.mask,
        head_template=normals.template,
        ray_maps=rays,
        K=K,
        c2w=c2w,
        head_pose=head_pose,
        blendshapes=expression.blendshapes,
        blendshape_names=blendshape_names,
        crops=expression.crops,
        crop_landmarks=expression.crop_landmarks,
        source_landmarks=source.face.landmarks,
        face_pixels=normals.face_pixels,
        driving_frames=None if driving is None else driving.frames,
        driving_landmarks=None if driving is None else driving.clip.landmarks,
        reference_c2w=source.c2w,
        report=report,
    )
