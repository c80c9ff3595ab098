"""A synthetic world whose every factor is known: which factors a world varies, each clip's
factors drawn and its pictures rendered (``head``), and the partner clips of the paired
measure.

A per-frame head pose (yaw and pitch), an expression (mouth opening and eye closure), a subject
(the head's colours) and a camera on an orbit in front of the head. Each sample: a target of F
frames and a reference frame of the same subject at another time, from the same camera or from
another one. Each held-out clip is also rendered with one factor at a time from a partner clip
(``with_partners_factor``, ``factor_partners``: the paired measure's counterfactuals).
``WORLDS`` holds the graded worlds of issue 27 (a: expression only; b: + subjects; c: + head
pose; d: + cameras) and the first experiment's. ``samples`` writes a world as ``prepare``
writes its samples. EXPERIMENTS.md describes the worlds and what they show.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..config import CAMERA
from ..viewpoint import intrinsics_from_fov, invert_rigid, orbit_c2w
from .head import SIZE, HeadMesh, Subject, crop_landmarks, render, rotation_yaw_pitch

FRAMES = 9
FPS = 8
DISTANCE_CM = 50.0
KINDS = ("frontal", "novel", "moving")  # static camera = reference's / static elsewhere / moving
# The world's factors, as the paired measure names them (``counterfactual``), and the
# conditions each one changes in a prepared sample.
FACTOR_FIELDS = {
    "reference": ("reference_latents",),
    "head_pose": ("normal_latents",),
    "camera": ("ray_latents", "normal_latents"),
    "expression": ("blendshapes", "crop_landmarks"),
}


@dataclass(frozen=True)
class WorldSpec:
    """Which factors a world varies (issue 27's graded worlds, and the first experiment's)."""

    description: str
    subjects: int | None = None  # None: as the experiment is told (8 by default)
    head_pose: bool = True  # False: a still frontal head
    kinds: tuple[str, ...] = KINDS  # ("frontal",): one held camera, the reference's
    distance_cm: float = DISTANCE_CM
    features: float = 1.0  # the mouth's and eyes' size, times the first world's

    def varies(self, subjects: int) -> dict[str, bool]:
        """Which of FACTOR_FIELDS' factors differ between the world's clips."""
        return {
            "reference": subjects > 1,
            "head_pose": self.head_pose,
            "camera": self.kinds != ("frontal",),
            "expression": True,
        }


NEAR_CM, LARGE_FEATURES = 40.0, 1.5
WORLDS = {
    "original": WorldSpec("the first experiment's world: 8 subjects, head poses, cameras"),
    "a": WorldSpec(
        "(a) expression only: one subject, a still frontal head, a held camera",
        subjects=1,
        head_pose=False,
        kinds=("frontal",),
    ),
    "b": WorldSpec(
        "(b) + several subjects (a nearer camera, a larger mouth and eyes)",
        head_pose=False,
        kinds=("frontal",),
        distance_cm=NEAR_CM,
        features=LARGE_FEATURES,
    ),
    "c": WorldSpec(
        "(c) + head pose",
        kinds=("frontal",),
        distance_cm=NEAR_CM,
        features=LARGE_FEATURES,
    ),
    "d": WorldSpec(
        "(d) + cameras: the full world, nearer, a larger mouth and eyes",
        distance_cm=NEAR_CM,
        features=LARGE_FEATURES,
    ),
}


@dataclass
class Draw:
    """What a clip is made of (every factor's value), before it is rendered."""

    kind: str
    changes_expression: bool
    subject: int
    head_pose: np.ndarray  # (F, 4, 4)
    mouth: np.ndarray  # (F,)
    eyes: np.ndarray  # (F,)
    c2w: np.ndarray  # (F, 4, 4)
    reference_c2w: np.ndarray  # (4, 4)
    K: np.ndarray  # (F, 3, 3)
    reference_pose: np.ndarray  # (1, 4, 4)
    reference_mouth: np.ndarray  # (1,)
    reference_eyes: np.ndarray  # (1,)


@dataclass
class WorldSample:
    kind: str
    subject: int
    reference_subject: int
    changes_expression: bool
    target: np.ndarray  # (F, H, W, 3) uint8
    reference: np.ndarray  # (H, W, 3) uint8
    normals: np.ndarray  # (F, H, W, 3) float32 camera-space
    head_mask: np.ndarray  # (F, H, W) bool
    K: np.ndarray  # (F, 3, 3)
    c2w: np.ndarray  # (F, 4, 4)
    reference_c2w: np.ndarray  # (4, 4)
    head_pose: np.ndarray  # (F, 4, 4)
    mouth: np.ndarray  # (F,)
    eyes: np.ndarray  # (F,)
    crop_landmarks: np.ndarray  # (F, 478, 2)
    draw: Draw | None = None


def draw_clip(
    subjects: int, rng: np.random.Generator, kind: str, changes_expression: bool, spec: WorldSpec
) -> Draw:
    """Every pose, camera and expression of one clip and its reference, drawn at random (the
    random draws are the same in every world; a world that holds a factor overrides it)."""
    frames = FRAMES
    subject_id = int(rng.integers(subjects))
    t = np.linspace(0, 1, frames)
    yaw = np.interp(t, [0, 1], rng.uniform(-25, 25, 2))
    pitch = np.interp(t, [0, 1], rng.uniform(-10, 10, 2))
    head_pose = rotation_yaw_pitch(yaw, pitch)
    if changes_expression:  # a clear change over the clip (over the C1 filter's 0.3)
        start = rng.uniform(0, 1, 2)
        end = np.where(
            start > 0.5, start - rng.uniform(0.45, 0.5, 2), start + rng.uniform(0.45, 0.5, 2)
        )
        mouth, eyes = (np.interp(t, [0, 1], [a, b]) for a, b in zip(start, end, strict=True))
    else:
        mouth, eyes = (np.full(frames, value) for value in rng.uniform(0, 1, 2))
    # The reference camera, and the target's cameras relative to the world.
    distance = spec.distance_cm
    ref_azimuth, ref_elevation = rng.uniform(-20, 20), rng.uniform(-6, 6)
    if spec.kinds == ("frontal",):  # one held camera for every clip
        ref_azimuth = ref_elevation = 0.0
    reference_c2w = orbit_c2w(ref_azimuth, ref_elevation, distance)
    if kind == "frontal":
        c2w = np.repeat(reference_c2w[None], frames, 0)
    elif kind == "novel":
        offset = rng.choice([-1, 1]) * rng.uniform(10, 30)
        c2w = np.repeat(
            orbit_c2w(ref_azimuth + offset, ref_elevation + rng.uniform(-8, 8), distance)[None],
            frames,
            0,
        )
    else:  # moving: from the reference camera (or near it) on a sweep of 15-30 degrees
        start = ref_azimuth + rng.uniform(-10, 10) * rng.integers(2)
        sweep = rng.choice([-1, 1]) * rng.uniform(15, 30)
        c2w = orbit_c2w(start + sweep * t, ref_elevation + rng.uniform(-5, 5) * t, distance)
    K = np.repeat(intrinsics_from_fov(CAMERA.fov_deg, SIZE, SIZE)[None], frames, 0)
    # The reference: the same subject at another time (another pose and expression).
    reference_pose = rotation_yaw_pitch(rng.uniform(-20, 20, 1), rng.uniform(-8, 8, 1))
    reference_mouth, reference_eyes = rng.uniform(0, 1, 1), rng.uniform(0, 1, 1)
    if not spec.head_pose:  # a still frontal head, in the clip and in the reference
        head_pose = np.tile(np.eye(4), (frames, 1, 1))
        reference_pose = np.eye(4)[None]
    return Draw(
        kind,
        changes_expression,
        subject_id,
        head_pose,
        mouth,
        eyes,
        c2w,
        reference_c2w,
        K,
        reference_pose,
        reference_mouth,
        reference_eyes,
    )


def render_clip(
    mesh: HeadMesh,
    subjects: list[Subject],
    face_points: np.ndarray,
    draw: Draw,
    features: float = 1.0,
) -> WorldSample:
    """The clip and its reference rendered, with the codes of its expression."""
    subject = subjects[draw.subject]
    target, normals, mask = render(
        mesh, subject, draw.head_pose, draw.c2w, draw.K, draw.mouth, draw.eyes, features
    )
    reference, _, _ = render(
        mesh,
        subject,
        draw.reference_pose,
        draw.reference_c2w[None],
        draw.K[:1],
        draw.reference_mouth,
        draw.reference_eyes,
        features,
    )
    landmarks = crop_landmarks(face_points, draw.mouth, draw.eyes, features)
    return WorldSample(
        draw.kind,
        draw.subject,
        draw.subject,
        draw.changes_expression,
        target,
        reference[0],
        normals,
        mask,
        draw.K,
        draw.c2w,
        draw.reference_c2w,
        draw.head_pose,
        draw.mouth,
        draw.eyes,
        landmarks,
        draw,
    )


def draw_sample(
    mesh: HeadMesh,
    subjects: list[Subject],
    face_points: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    changes_expression: bool,
    spec: WorldSpec = WORLDS["original"],
) -> WorldSample:
    """One target clip and its reference, every pose, camera and expression drawn at random."""
    draw = draw_clip(len(subjects), rng, kind, changes_expression, spec)
    return render_clip(mesh, subjects, face_points, draw, spec.features)


def with_partners_factor(draw: Draw, partner: Draw, factor: str) -> Draw:
    """``draw`` with one factor (a key of FACTOR_FIELDS) taken from ``partner``: its subject
    (target and reference), its head poses, its cameras relative to its reference camera (put
    relative to this clip's reference camera, so its rays are the partner's), its expression."""
    if factor == "reference":
        return replace(draw, subject=partner.subject)
    if factor == "head_pose":
        return replace(draw, head_pose=partner.head_pose)
    if factor == "camera":
        # Orbit cameras are one rotation about the head centre apart: still on the orbit.
        moved = draw.reference_c2w @ invert_rigid(partner.reference_c2w) @ partner.c2w
        return replace(draw, c2w=moved, kind=partner.kind)
    if factor == "expression":
        return replace(draw, mouth=partner.mouth, eyes=partner.eyes)
    raise ValueError(f"unknown factor {factor!r}")


def factor_partners(draws: list[Draw], varies: dict[str, bool]) -> dict[str, list[int]]:
    """For each factor the world varies and each held-out clip, the next held-out clip (in
    order, wrapping) whose factor really differs: another subject, another head pose, cameras
    that differ relative to the reference camera (two frontal clips share theirs), an
    expression at least 0.2 apart somewhere in the clip."""
    count = len(draws)

    def relative(d: Draw) -> np.ndarray:
        return invert_rigid(d.reference_c2w) @ d.c2w

    differs = {
        "reference": lambda a, b: a.subject != b.subject,
        "head_pose": lambda a, b: np.abs(a.head_pose - b.head_pose).max() > 1e-3,
        "camera": lambda a, b: np.abs(relative(a) - relative(b)).max() > 1e-3,
        "expression": lambda a, b: (
            max(np.abs(a.mouth - b.mouth).max(), np.abs(a.eyes - b.eyes).max()) > 0.2
        ),
    }
    partners = {}
    for factor, test in differs.items():
        if not varies[factor]:
            continue
        chosen = []
        for i in range(count):
            order = [(i + step) % count for step in range(1, count)]
            chosen.append(next((j for j in order if test(draws[i], draws[j])), order[0]))
        partners[factor] = chosen
    return partners
