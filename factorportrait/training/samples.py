"""Self-reenactment training samples: the Conditioning bundle of a target clip built from its
own tracking and, where the data has them, its recorded cameras (README: Training).

Inference retargets a driving video onto a portrait and flies a requested trajectory; a
training sample instead describes the target clip as it is, so the model learns to reproduce
it from (reference, normals, rays, expressions). It is composed from the SAME stages as
inference (``factorportrait.conditioning.stages``); only the cameras come from the data:

    reference frame --source--> framed reference, template head, the reference camera
    target frames --driving--> tracked clip; each head placed for our camera model
    recorded cameras / the synchronised group --> target cameras relative to the reference's
    heads in the world --normals--> normal maps aligned with the target frames; --rays-->

World = the head frame of the reference image, as at inference, and the rays are relative to
the reference camera. A sample taught from a static camera that also took the reference is
frontal-dynamic (identity rays); a held camera elsewhere is novel-dynamic; a camera that moves
over the target is all-dynamic. Every framed image is treated as seen by our default camera
(the project's field of view over a portrait-style crop), as inference does for a portrait.

Recorded cameras are in the data's own units and world. Only their motion relative to the
reference frame's camera is used; its translation is converted to cm either by a stated scale
or by least squares under the assumption that the head's centre stays put while the camera
moves (``estimate_cm_per_unit``), which also makes the scale agree with the default-FOV
geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..conditioning import Conditioning, ConditioningSettings
from ..conditioning.framing import frame_images
from ..conditioning.report import ConditioningReport, SampleCameras
from ..conditioning.stages import (
    Driving,
    Source,
    assemble,
    driven_head_poses,
    driving_stage,
    explicit_cameras,
    expression_stage,
    normals_stage,
    rays_stage,
    source_stage,
)
from ..errors import InputError
from ..head_pose import place_heads
from ..modes import Mode
from ..planning.guardrails import camera_offsets, head_turns
from ..tracking import FaceTracker
from ..viewpoint import invert_rigid
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
    reference_camera: np.ndarray | None = None,
    moment_frame: np.ndarray | None = None,
    moment_camera: np.ndarray | None = None,
) -> TrainingSample:
    """A training sample from a reference image and F target frames at the output times,
    composed from the same stages as inference (``factorportrait.conditioning.stages``).

    cameras (F,4,4): the recorded camera of each target frame (OpenCV axes, data units), or
    None for a static camera. Where the reference came from:
    - the same camera (default): ``reference_camera`` (4,4) is the recorded camera of the
      reference frame (same world and units as ``cameras``; default: the first target camera);
    - another camera of a synchronised group: ``moment_frame`` is THIS camera's frame at the
      moment the reference was taken, ``moment_camera`` its recorded camera (or None). The head
      seen by both cameras at that moment ties the two cameras together.
    """
    settings = settings.validated()
    frames, height, width = len(target_frames), settings.height, settings.width
    if settings.frames is not None and frames != settings.frames:
        raise InputError(f"target: {frames} frames, expected {settings.frames}")
    report = ConditioningReport(cameras=SampleCameras())

    source = source_stage(reference_image, tracker, height, width, report)
    target = driving_stage(
        target_frames,
        np.arange(frames) / settings.fps,
        tracker,
        source.template,
        height,
        width,
        smoothing=settings.smoothing,
        report=report,
        name="target clip",
        key="target",
        max_filled_fraction=0.25,  # mostly invented poses and expressions: not a target
    )
    K = np.repeat(source.K[None], frames, axis=0)
    # The target cameras relative to the reference camera (cm), then in the world.
    relative = _target_cameras(
        source,
        target,
        tracker,
        cameras,
        cm_per_unit,
        reference_camera,
        moment_frame,
        moment_camera,
        report,
    )
    K, c2w = explicit_cameras((K, relative), frames, source.c2w)
    # A target is its own driving clip, filmed by those cameras: absolute poses, full strength.
    as_filmed = replace(settings, relative_pose=False, pose_strength=1.0)
    head_pose = driven_head_poses(target, source, frames, as_filmed, driving_cameras=relative)
    distance = float(np.linalg.norm(source.c2w[:3, 3]))
    within = camera_motion(relative)  # the camera's own motion over the target (C1 filter)
    turned, moved = _camera_motion_size(within, distance)
    report.cameras.camera_turn_deg, report.cameras.camera_move_fraction = turned, moved
    camera_change = _changes(turned, moved)
    normals = normals_stage(source.template, head_pose, K, c2w, height, width)
    # How well the posed template sits on the target's tracked face (data quality).
    report.reprojection_px = float(
        np.linalg.norm(
            normals.face_pixels - target.framed_landmarks[:, : normals.face_pixels.shape[1]],
            axis=-1,
        ).mean()
    )
    if camera_change:
        mode = Mode.ALL_DYNAMIC
    elif _moves(relative[0], distance):
        mode = Mode.NOVEL_DYNAMIC  # a held view that is not the reference's own
    else:
        mode = Mode.FRONTAL_DYNAMIC
    expression = expression_stage(
        target, reference_image, source, frames, replace(settings, mode=mode)
    )
    rays = rays_stage(K, c2w, source.c2w, height, width)
    names = tracker.blendshape_names or []
    conditioning = assemble(
        mode, settings.fps, source, K, c2w, head_pose, normals, rays, expression, names, report
    )
    framed = frame_images(target_frames, target.framing, height, width)
    return TrainingSample(conditioning, framed, camera_change)


def _target_cameras(
    source: Source,
    target: Driving,
    tracker: FaceTracker,
    cameras: np.ndarray | None,
    cm_per_unit: float | None,
    reference_camera: np.ndarray | None,
    moment_frame: np.ndarray | None,
    moment_camera: np.ndarray | None,
    report: ConditioningReport,
) -> np.ndarray:
    """(F,4,4) each target camera relative to the reference camera, translation in cm."""
    frames = len(target.head_to_camera)
    if cameras is not None:
        # The unit from the target's own frames (one framing, one virtual camera).
        cm_per_unit = _cm_per_unit(camera_motion(cameras), cm_per_unit, target, report)
    if moment_frame is None:  # the reference was taken by this same camera
        if cameras is None:
            return np.tile(np.eye(4), (frames, 1, 1))
        start = cameras[0] if reference_camera is None else reference_camera
        return _in_cm(invert_rigid(start) @ cameras, cm_per_unit)
    # Another camera of a synchronised group: at the reference's moment both cameras saw the
    # same head, so camera B = camera A x (head in A) x (head in B)^-1.
    seen = tracker.track_image(moment_frame)
    if seen is None:
        raise InputError("target clip: no face at the moment the reference was taken")
    landmarks = seen.landmarks[None, :, :2] * target.framing[0, 0] + target.framing[:, 2]
    head_in_b = place_heads(
        seen.head_to_camera[None, :3, :3], landmarks, source.template.face_vertices, source.K
    )[0]
    b_at_moment = invert_rigid(source.c2w) @ invert_rigid(head_in_b)  # ... in A's frame
    if cameras is None:
        return np.repeat(b_at_moment[None], frames, axis=0)
    start = cameras[0] if moment_camera is None else moment_camera
    return b_at_moment @ _in_cm(invert_rigid(start) @ cameras, cm_per_unit)


def sample_ranges(cond: Conditioning) -> dict[str, float]:
    """What a sample covers, for the trained ranges a checkpoint records, measured exactly as
    requests are (``factorportrait.planning.guardrails``): the head's yaw and pitch since its first frame
    seen from the reference camera, each camera's azimuth / elevation offsets and distance ratio
    from the reference camera, and the field of view."""
    yaw, pitch = head_turns(cond.head_pose, cond.reference_c2w)
    offsets = camera_offsets(cond.c2w, cond.K, cond.reference_c2w, cond.height)
    measured = {
        "head_yaw_deg": yaw,
        "head_pitch_deg": pitch,
        "camera_azimuth_deg": offsets["azimuth"],
        "camera_elevation_deg": offsets["elevation"],
        "camera_distance_ratio": offsets["distance"],
    }
    out = {"fov_deg": float(offsets["fov"].mean())}  # one field of view per sample
    for name, values in measured.items():
        out[f"{name}_min"], out[f"{name}_max"] = float(values.min()), float(values.max())
    return out


def _in_cm(motion: np.ndarray, cm_per_unit: float | None) -> np.ndarray:
    motion = motion.copy()
    if cm_per_unit is not None:
        motion[:, :3, 3] *= cm_per_unit
    return motion


def _moves(relative: np.ndarray, distance: float) -> bool:
    """Whether a camera differs noticeably from the reference camera (same thresholds as the
    C1 filter's camera change)."""
    return _changes(*_camera_motion_size(relative[None], distance))


def _cm_per_unit(
    motion: np.ndarray, cm_per_unit: float | None, target: Driving, report: ConditioningReport
) -> float | None:
    """The recorded cameras' unit in cm: stated in the file, or estimated so the head centre
    stays put while the camera moves (None: the camera only turns, no unit needed)."""
    scale_source = "file"
    if cm_per_unit is None:
        cm_per_unit, residual = estimate_cm_per_unit(motion, target.head_to_camera)
        scale_source = "estimated"
        if cm_per_unit is None:
            return None
        report.cameras.head_centre_drift_cm = residual
        if cm_per_unit <= 0:
            raise InputError(
                "cameras: the camera motion and the tracked head disagree (estimated "
                f"scale {cm_per_unit:.3g} cm per unit); state cm_per_unit in the file"
            )
    report.cameras.cm_per_unit, report.cameras.cm_per_unit_source = cm_per_unit, scale_source
    return cm_per_unit


def _camera_motion_size(motion: np.ndarray, distance: float) -> tuple[float, float]:
    """The largest turn (degrees) and move (fraction of the distance to the head) of cameras
    (F,4,4) relative to a camera they are measured from."""
    cosine = (np.trace(motion[:, :3, :3], axis1=1, axis2=2) - 1) / 2
    turned = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    moved = np.linalg.norm(motion[:, :3, 3], axis=1) / distance
    return float(turned.max()), float(moved.max())


def _changes(turned_deg: float, moved_fraction: float) -> bool:
    """Whether a camera turns or moves noticeably (the C1 data filter's camera change)."""
    return turned_deg > CAMERA_CHANGE_DEG or moved_fraction > CAMERA_CHANGE_FRACTION
