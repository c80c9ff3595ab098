"""Self-reenactment training samples: the Conditioning bundle of a target clip built from its
own tracking and, where the data has them, its recorded cameras (README: Training).

Inference retargets a driving video onto a portrait and flies a requested trajectory; a
training sample instead describes the target clip as it is, so the model learns to reproduce
it from (reference, normals, rays, expressions):

    reference frame (same person, another time, maybe another camera) --track--> template head
    target frames --track--> per-frame head rotation; translation solved for our camera model
    recorded cameras --> camera motion relative to the first target frame, in cm
    head pose x cameras --rasterise--> normal maps aligned with the target frames; --> rays

World = the head frame at the first target frame (head pose identity there), so the first
target camera plays the part of the portrait's camera at inference. Every camera uses the
project's default field of view over a portrait-style crop of the first target frame, the
same assumption inference makes for a portrait: the head translations are solved for that
camera model (not taken from MediaPipe's), so the normal renders land on the target's face.

Recorded cameras are in the data's own units and world. Only their motion relative to the
first target frame is used; its translation is converted to cm either by a stated scale or by
least squares under the assumption that the head's centre stays put while the camera moves
(``estimate_cm_per_unit``), which also makes the scale agree with the default-FOV geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..conditioning import Conditioning, ConditioningSettings
from ..config import CAMERA
from ..errors import InputError
from ..expression import aligned_crops, landmarks_in_crops
from ..framing import frame_clip, frame_portrait, track_portrait
from ..head_pose import project_points, render_head
from ..head_pose.canonical import load_canonical_face
from ..head_pose.retarget import nearest_rotation, solve_head_translations
from ..head_pose.template import build_head_template, fit_proportions
from ..modes import Mode
from ..tracking import FaceTracker, assemble_clip, landmark_jitter, smooth_clip
from ..viewpoint import intrinsics_from_fov, invert_rigid, plucker_rays
from ..viewpoint.geometry import OPENGL_TO_OPENCV

MAX_CAMERA_FILE_BYTES = 32 * 1024 * 1024
# A target whose camera turns by more than this, or moves by more than this fraction of its
# distance to the head, counts as a camera change (the C1 data filter).
CAMERA_CHANGE_DEG = 2.0
CAMERA_CHANGE_FRACTION = 0.02


@dataclass(frozen=True)
class RecordedCameras:
    """Cameras from a clip's cameras file: one camera-to-world matrix per decoded frame."""

    c2w: np.ndarray  # (N, 4, 4) OpenCV axes, the data's world and units
    cm_per_unit: float | None  # None: estimated per sample


def read_camera_file(path: str | Path, frames: int) -> RecordedCameras:
    """Read a cameras JSON file for a clip of ``frames`` decoded frames.

    ``{"convention": "opencv" | "opengl", "cm_per_unit": 100.0, "c2w": [[[4 x 4]], ...]}``;
    ``convention`` defaults to opencv, ``cm_per_unit`` is optional (estimated when absent).
    """
    path = Path(path)
    name = path.name
    try:
        if path.stat().st_size > MAX_CAMERA_FILE_BYTES:
            raise InputError(f"cameras {name}: over {MAX_CAMERA_FILE_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cameras {name}: cannot read it ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cameras {name}: not JSON ({exc})") from None
    if not isinstance(data, dict) or "c2w" not in data:
        raise InputError(f'cameras {name}: needs a "c2w" list of 4x4 matrices')
    unknown = set(data) - {"convention", "cm_per_unit", "c2w"}
    if unknown:
        raise InputError(f"cameras {name}: unknown field(s) {', '.join(sorted(unknown))}")
    convention = data.get("convention", "opencv")
    if convention not in ("opencv", "opengl"):
        raise InputError(f"cameras {name}: convention must be opencv or opengl")
    try:
        c2w = np.asarray(data["c2w"], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"cameras {name}: c2w must be numbers") from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or not np.isfinite(c2w).all():
        raise InputError(f"cameras {name}: c2w must be a list of finite 4x4 matrices")
    if len(c2w) != frames:
        raise InputError(
            f"cameras {name}: {len(c2w)} cameras for a video of {frames} frames "
            "(one per decoded frame)"
        )
    rotations = c2w[:, :3, :3]
    orthogonal = np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(3)).max()
    if orthogonal > 1e-3 or (np.linalg.det(rotations) < 0).any():
        raise InputError(f"cameras {name}: c2w rotations must be rotations (no scale or mirror)")
    if convention == "opengl":
        c2w = c2w @ OPENGL_TO_OPENCV
    scale = data.get("cm_per_unit")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e6
    ):
        raise InputError(f"cameras {name}: cm_per_unit must be a positive number")
    return RecordedCameras(c2w, None if scale is None else float(scale))


def camera_motion(c2w: np.ndarray) -> np.ndarray:
    """(F,4,4) motion of each camera relative to the first: inv(c2w[0]) @ c2w[f]."""
    motion = invert_rigid(c2w[0]) @ c2w
    motion[0] = np.eye(4)
    return motion


def estimate_cm_per_unit(
    motion: np.ndarray, head_to_camera: np.ndarray
) -> tuple[float | None, float]:
    """Scale (cm per data unit) that keeps the head centre still while the camera moves.

    motion (F,4,4): camera motion in data units; head_to_camera (F,4,4): the head in each
    camera, cm. In the first camera's frame the head centre is R_f t_f + s T_f for every f;
    least squares on it equalling t_0 is linear in s. Returns (None, 0) when the camera does
    not translate (no scale is needed), else (scale, rms residual in cm).
    """
    rotation, shift = motion[:, :3, :3], motion[:, :3, 3]
    t = head_to_camera[:, :3, 3]
    a = np.einsum("fij,fj->fi", rotation, t) - t[0]
    denominator = float((shift * shift).sum())
    if denominator == 0.0:
        return None, 0.0
    scale = -float((a * shift).sum()) / denominator
    residual = float(np.sqrt(((a + scale * shift) ** 2).sum(axis=1).mean()))
    return scale, residual


@dataclass
class TrainingSample:
    conditioning: Conditioning
    target_frames: np.ndarray  # (F, H, W, 3) uint8: the target, framed like the conditions
    camera_change: bool


def build_sample_conditioning(
    reference_image: np.ndarray,
    target_frames: np.ndarray,
    *,
    settings: ConditioningSettings,
    tracker: FaceTracker,
    cameras: np.ndarray | None = None,
    cm_per_unit: float | None = None,
    other_camera: bool = False,
) -> TrainingSample:
    """A training sample from a reference image and F target frames at the output times.

    cameras (F,4,4): the recorded camera of each target frame (OpenCV axes, data units), or
    None for a static camera. other_camera: the reference was taken by another camera (only
    recorded in the mode label)."""
    settings = settings.validated()
    frames, height, width = len(target_frames), settings.height, settings.width
    if settings.frames is not None and frames != settings.frames:
        raise InputError(f"target: {frames} frames, expected {settings.frames}")
    report: dict = {"warnings": []}

    portrait = track_portrait(tracker, reference_image, report)
    reference, face, _ = frame_portrait(reference_image, portrait, height, width)
    canonical = load_canonical_face(str(tracker.model_path))
    template = build_head_template(canonical, fit_proportions(canonical, face.landmarks))

    clip = _track_target(tracker, target_frames, settings, report)
    framed, landmarks = frame_clip(target_frames, clip.landmarks, height, width)
    K = np.repeat(intrinsics_from_fov(CAMERA.fov_deg, height, width)[None], frames, axis=0)
    head_to_camera = _head_to_camera(clip.rotations, template, landmarks, K)
    motion = np.tile(np.eye(4), (frames, 1, 1))
    if cameras is not None:
        motion = _motion_in_cm(camera_motion(cameras), cm_per_unit, head_to_camera, report)
    # World = the head frame at the first target frame; the cameras move from there.
    c2w = invert_rigid(head_to_camera[0]) @ motion
    head_pose = c2w @ head_to_camera
    camera_change = _camera_change(motion, float(np.linalg.norm(head_to_camera[0, :3, 3])), report)

    render = render_head(template, head_pose, K, c2w, height, width)
    face_pixels = project_points(template.face_vertices, head_pose, K, c2w)
    # How well the posed template sits on the target's tracked face (data quality).
    report["reprojection_px"] = float(
        np.linalg.norm(face_pixels - landmarks[:, : face_pixels.shape[1]], axis=-1).mean()
    )
    if camera_change:
        mode = Mode.ALL_DYNAMIC
    else:
        mode = Mode.NOVEL_DYNAMIC if other_camera else Mode.FRONTAL_DYNAMIC
    conditioning = Conditioning(
        mode=mode,
        fps=settings.fps,
        reference=reference,
        normals=render.normals,
        mask=render.mask,
        rays=plucker_rays(K, c2w, height, width),
        K=K,
        c2w=c2w,
        head_pose=head_pose,
        blendshapes=clip.blendshapes,
        blendshape_names=tracker.blendshape_names or [],
        crops=aligned_crops(target_frames, clip.landmarks, settings.crop_size),
        crop_landmarks=landmarks_in_crops(clip.landmarks, settings.crop_size),
        source_landmarks=face.landmarks,
        face_pixels=face_pixels,
        report=report,
    )
    return TrainingSample(conditioning, framed, camera_change)


def _track_target(tracker, frames: np.ndarray, settings: ConditioningSettings, report: dict):
    times = np.arange(len(frames)) / settings.fps
    clip = assemble_clip(tracker.track_frames(frames, times), times, name="target clip")
    report["target_frames_filled"] = clip.filled
    if clip.filled > len(frames) // 4:  # mostly invented poses and expressions: not a target
        raise InputError(f"target clip: the face is lost in {clip.filled} of {len(frames)} frames")
    report["jitter_px_raw"] = landmark_jitter(clip.landmarks)
    return smooth_clip(clip) if settings.smoothing else clip


def _head_to_camera(rotations, template, landmarks: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Tracked rotations; translations solved for our camera model, so the posed template
    reprojects onto the tracked landmarks (MediaPipe's own translations assume its camera)."""
    poses = np.tile(np.eye(4), (len(rotations), 1, 1))
    poses[:, :3, :3] = nearest_rotation(rotations)
    poses[:, :3, 3] = solve_head_translations(
        poses[:, :3, :3], template.face_vertices, landmarks, K
    )
    if (poses[:, 2, 3] <= 5.0).any():
        raise InputError("target clip: the face is too close or too large to place a camera")
    return poses


def _motion_in_cm(
    motion: np.ndarray, cm_per_unit: float | None, head_to_camera: np.ndarray, report: dict
) -> np.ndarray:
    """Recorded camera motion with its translation converted to cm (stated or estimated)."""
    scale_source = "file"
    if cm_per_unit is None:
        cm_per_unit, residual = estimate_cm_per_unit(motion, head_to_camera)
        scale_source = "estimated"
        if cm_per_unit is None:  # the camera only turns: no scale needed
            return motion
        report["head_centre_drift_cm"] = residual
        if cm_per_unit <= 0:
            raise InputError(
                "cameras: the camera motion and the tracked head disagree (estimated "
                f"scale {cm_per_unit:.3g} cm per unit); state cm_per_unit in the file"
            )
    motion = motion.copy()
    motion[:, :3, 3] *= cm_per_unit
    report.update(cm_per_unit=cm_per_unit, cm_per_unit_source=scale_source)
    return motion


def _camera_change(motion: np.ndarray, distance: float, report: dict) -> bool:
    """Whether the camera turns or moves noticeably over the target (the C1 data filter)."""
    cosine = (np.trace(motion[:, :3, :3], axis1=1, axis2=2) - 1) / 2
    turned = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    moved = np.linalg.norm(motion[:, :3, 3], axis=1) / distance
    report.update(camera_turn_deg=float(turned.max()), camera_move_fraction=float(moved.max()))
    return bool(turned.max() > CAMERA_CHANGE_DEG or moved.max() > CAMERA_CHANGE_FRACTION)
