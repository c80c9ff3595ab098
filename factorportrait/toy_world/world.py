"""A synthetic world whose every factor is known, written as ``prepare`` writes its samples.

A textured head (an ellipsoid with a nose, rendered by our own rasteriser) whose colours are
the identity (skin, hair, hairline and a coloured mark per subject), a per-frame head pose (yaw
and pitch), an expression (mouth opening and eye closure painted on the face), and a camera
on an orbit in front of a background painted on the sky at infinity (so a camera turn shows in
the background, apart from the head). Each sample: a target of F frames and a reference frame
of the same subject at another time, from the same camera or from another one.

The samples hold exactly the tensors and index rows that ``prepare`` writes (latents of
target, reference and normal maps by the checkpoint's VAE, packed Plücker rays relative to the
reference camera, blendshapes, crop landmarks), so the real ``train`` reads them unchanged.
Expression reaches the model as its known parameters in the ``blendshapes`` code (eyeBlinkLeft,
eyeBlinkRight, jawOpen) or, for the C3 ablation, as face landmarks in the head's own frame (as
the real C3 codes since issue 27). What only the experiment needs (the head's pixels, the
sample's kind, each held-out clip's partners) is kept apart in ``truth.json``; each held-out clip
is also rendered with one factor at a time from a partner clip (the paired measure's
counterfactuals). ``WORLDS`` holds the graded worlds of issue 27 (a: expression only; b: +
subjects; c: + head pose; d: + cameras) and the first experiment's. EXPERIMENTS.md describes the
worlds and what they show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import trimesh
from safetensors.torch import save_file

from ..config import CAMERA, LATENT
from ..head_pose.rasterizer import rasterize
from ..models import pack_plucker
from ..modes import Mode
from ..pipelines.checkpoints import component_digests
from ..training.samples import sample_ranges
from ..viewpoint import intrinsics_from_fov, invert_rigid, orbit_c2w, plucker_rays

SIZE = 64
FRAMES = 9
FPS = 8
DISTANCE_CM = 50.0
RADII_CM = np.array([7.5, 10.0, 8.5])  # the head ellipsoid's half-axes: x, y, z (face out)
BLENDSHAPES = 52
EYE_BLINK = (9, 10)  # MediaPipe's eyeBlinkLeft, eyeBlinkRight
JAW_OPEN = 25
LANDMARKS = 478
KINDS = ("frontal", "novel", "moving")  # static camera = reference's / static elsewhere / moving
# The old ray convention: rays relative to the first output frame's camera, not the reference's.
RAY_CONVENTIONS = ("reference", "first-frame")
ENCODE_BATCH = 64
# The world's factors, as the paired measure names them (``counterfactual``), and the
# conditions each one changes in a prepared sample.
FACTOR_FIELDS = {
    "reference": ("reference_latents",),
    "head_pose": ("normal_latents",),
    "camera": ("ray_latents", "normal_latents"),
    "expression": ("blendshapes", "crop_landmarks"),
}
# The data folders a world writes: as prepare writes them, the old ray convention, and the
# noise floor (training samples' expression codes shuffled between samples; held-out ones kept).
DATA_FOLDERS = {
    "reference": "data",
    "first-frame": "data-first-frame-rays",
    "shuffled": "data-shuffled-codes",
}
CODE_FIELDS = ("blendshapes", "crop_landmarks")


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


@dataclass(frozen=True)
class Subject:
    skin: np.ndarray  # (3,) in [0, 1]
    hair: np.ndarray
    hairline: float  # the hair starts above this height of the head's unit directions
    mark: np.ndarray  # (3,) colour of a patch on the face
    mark_at: np.ndarray  # (2,) where on the face chart (x, y)


@dataclass(frozen=True)
class HeadMesh:
    vertices: np.ndarray  # (V, 3) cm, head frame (x right, y up, z out of the face)
    faces: np.ndarray  # (T, 3) outward winding
    normals: np.ndarray  # (V, 3)
    directions: np.ndarray  # (V, 3) unit: where on the head, independent of the pose (texture)


def head_mesh() -> HeadMesh:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    directions = np.asarray(sphere.vertices, float)
    vertices = directions * RADII_CM
    # A nose: without it a turned ellipsoid and a still one would look too much alike.
    nose = np.exp(-(directions[:, 0] ** 2 + (directions[:, 1] + 0.08) ** 2) / (2 * 0.13**2))
    vertices[:, 2] += 2.5 * nose * (directions[:, 2] > 0)
    mesh = trimesh.Trimesh(vertices, np.asarray(sphere.faces), process=False)
    return HeadMesh(vertices, np.asarray(mesh.faces), np.asarray(mesh.vertex_normals), directions)


def make_subjects(count: int, rng: np.random.Generator) -> list[Subject]:
    subjects = []
    for _ in range(count):
        subjects.append(
            Subject(
                skin=rng.uniform([0.45, 0.3, 0.2], [0.95, 0.8, 0.7]),
                hair=rng.uniform(0.0, 0.9, 3),
                hairline=float(rng.uniform(0.3, 0.7)),
                mark=rng.uniform(0.0, 1.0, 3),
                mark_at=np.array(
                    [rng.choice([-1, 1]) * rng.uniform(0.35, 0.55), rng.uniform(-0.3, 0.05)]
                ),
            )
        )
    return subjects


def rotation_yaw_pitch(yaw_deg: np.ndarray, pitch_deg: np.ndarray) -> np.ndarray:
    """(F,4,4) head -> world: yaw about y (the head turns to its left for > 0), then pitch."""
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    poses = np.tile(np.eye(4), (len(yaw), 1, 1))
    ry = np.zeros((len(yaw), 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = cy, sy, 1, -sy, cy
    rx = np.zeros((len(yaw), 3, 3))
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1, cp, -sp, sp, cp
    poses[:, :3, :3] = ry @ rx
    return poses


def _face_paint(
    direction: np.ndarray,
    subject: Subject,
    mouth: np.ndarray,
    eyes: np.ndarray,
    features: float = 1.0,
) -> np.ndarray:
    """Albedo (N, 3) at head-frame unit directions (N, 3); mouth, eyes: (N,) in [0, 1] (open
    mouth, closed eyes); ``features`` scales the eyes' and the mouth's size."""
    k = features
    x, y, z = direction[:, 0], direction[:, 1], direction[:, 2]
    colour = np.broadcast_to(subject.skin, direction.shape).copy()
    hair = (y > subject.hairline) | (z < -0.25)
    colour[hair] = subject.hair
    front = z > 0.3
    mark = front & ((x - subject.mark_at[0]) ** 2 + (y - subject.mark_at[1]) ** 2 < 0.11**2)
    colour[mark] = subject.mark
    # Eyes: an ellipse whose height shrinks as the eye closes (skin-coloured lid), dark pupils.
    for side in (-1.0, 1.0):
        dx, dy = x - side * 0.33, y - 0.2
        half_height = k * 0.1 * (1 - eyes) + 1e-3
        inside = front & ((dx / (k * 0.15)) ** 2 + (dy / half_height) ** 2 < 1)
        colour[inside] = [0.95, 0.95, 0.95]
        colour[inside & (dx**2 + dy**2 < (k * 0.055) ** 2)] = [0.05, 0.05, 0.25]
        lid = (dx / (k * 0.17)) ** 2 + (dy / (half_height + k * 0.03)) ** 2 < 1
        lid = front & ~inside & lid
        colour[lid] = subject.skin * 0.55
    # Mouth: dark, opening downwards, inside red lips.
    dx, dy = x, y + 0.42
    half_height = k * (0.025 + 0.2 * mouth)
    lips = front & ((dx / (k * 0.27)) ** 2 + (dy / (half_height + k * 0.05)) ** 2 < 1)
    colour[lips] = [0.75, 0.1, 0.15]
    colour[lips & ((dx / (k * 0.22)) ** 2 + (dy / half_height) ** 2 < 1)] = [0.08, 0.0, 0.02]
    return colour


def _sky(directions: np.ndarray) -> np.ndarray:
    """The background at infinity: a colour for each world direction (N, 3), distinct over the
    views the world uses, so where a camera looks shows in it."""
    azimuth = np.arctan2(directions[:, 0], -directions[:, 2])
    elevation = np.arcsin(np.clip(directions[:, 1], -1, 1))
    colour = np.stack(
        [
            0.5 + 0.4 * np.sin(3.0 * azimuth + 0.3),
            0.5 + 0.4 * np.sin(5.0 * azimuth + 2.0 * elevation + 1.7),
            0.5 + 0.4 * np.cos(4.0 * elevation - 2.0 * azimuth),
        ],
        axis=1,
    )
    bands = (np.floor(np.degrees(azimuth) / 9.0) + np.floor(np.degrees(elevation) / 9.0)) % 2
    return colour * (0.75 + 0.25 * bands[:, None])


def render(
    mesh: HeadMesh,
    subject: Subject,
    head_pose: np.ndarray,
    c2w: np.ndarray,
    K: np.ndarray,
    mouth: np.ndarray,
    eyes: np.ndarray,
    features: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (F, H, W, 3) uint8, camera-space normal maps (F, H, W, 3) and head masks (F, H, W)
    for head poses and cameras (F, 4, 4) with the expression (F,) of each frame (``features``:
    the mouth's and eyes' size, ``_face_paint``)."""
    frames = len(head_pose)
    head_to_camera = invert_rigid(c2w) @ head_pose
    rotation, shift = head_to_camera[:, :3, :3], head_to_camera[:, :3, 3]
    vertices = np.einsum("fij,vj->fvi", rotation, mesh.vertices) + shift[:, None]
    normals = np.einsum("fij,vj->fvi", rotation, mesh.normals)
    geometry = rasterize(vertices, normals, mesh.faces, K, SIZE, SIZE)
    # The same triangles again, interpolating where on the head each pixel is (the texture).
    chart = np.repeat(mesh.directions[None], frames, axis=0)
    where = rasterize(vertices, chart, mesh.faces, K, SIZE, SIZE)
    mask = geometry.mask
    images = np.zeros((frames, SIZE, SIZE, 3))
    light = np.array([-0.35, -0.5, -1.0]) / np.linalg.norm([-0.35, -0.5, -1.0])
    v, u = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5, indexing="ij")
    pixels = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    for f in range(frames):
        hit = mask[f]
        albedo = _face_paint(
            where.normals[f][hit],
            subject,
            np.full(hit.sum(), mouth[f]),
            np.full(hit.sum(), eyes[f]),
            features,
        )
        shade = 0.45 + 0.55 * np.clip(geometry.normals[f][hit] @ light, 0, 1)
        rays = pixels @ np.linalg.inv(K[f]).T @ c2w[f, :3, :3].T
        rays /= np.linalg.norm(rays, axis=1, keepdims=True)
        background = _sky(rays).reshape(SIZE, SIZE, 3)
        images[f] = background
        images[f][hit] = albedo * shade[:, None]
    return (np.clip(images, 0, 1) * 255 + 0.5).astype(np.uint8), geometry.normals, mask


def face_points(rng: np.random.Generator) -> np.ndarray:
    """478 fixed head-frame unit directions on the face: the first 40 on the lips, then 20 on
    each eye's rim (moved by the expression), then the rest spread over the face."""
    rest = rng.normal(size=(LANDMARKS - 80, 3)) * [0.45, 0.45, 0.1] + [0, -0.05, 1]
    return rest / np.linalg.norm(rest, axis=1, keepdims=True)


def _face_size_cm(face_points: np.ndarray) -> float:
    """The C3 codes' unit: the fixed face points' root-mean-square distance from their centroid
    (cm), as the real codes use the canonical stable points' (``expression.landmarks``)."""
    points = face_points * RADII_CM
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def crop_landmarks(
    face_points: np.ndarray, mouth: np.ndarray, eyes: np.ndarray, features: float = 1.0
) -> np.ndarray:
    """(F, 478, 2): the C3 ablation's codes in the head's own frame, as the real ones since
    issue 27 (``expression.head_frame_landmarks``): each face point's x (right) and y (up) on
    the head, before any pose or camera, relative to the fixed points' centroid, in units of the
    face's size; the fixed points (which do not move with expression) 0. The first 40 are on
    the lips, then 20 on each eye's rim (``face_points``): they carry the expression and
    nothing else."""
    size = _face_size_cm(face_points)
    centre = (face_points * RADII_CM).mean(0)[:2]
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    k = features
    out = np.zeros((len(mouth), LANDMARKS, 2))
    for f in range(len(mouth)):
        lips = np.stack(
            [k * 0.25 * np.cos(angles), -0.42 + k * (0.05 + 0.2 * mouth[f]) * np.sin(angles)], 1
        )
        lips = np.concatenate([lips, lips * [0.8, 1.0]])  # outer and inner lip
        eyes_rim = [
            np.stack(
                [
                    side * 0.33 + k * 0.15 * np.cos(angles),
                    0.2 + k * 0.1 * (1 - eyes[f]) * np.sin(angles),
                ],
                1,
            )
            for side in (-1.0, 1.0)
        ]
        chart = np.concatenate([lips, *eyes_rim])
        z = np.sqrt(np.clip(1 - (chart**2).sum(1), 0.05, 1))
        points = np.column_stack([chart, z]) * RADII_CM
        out[f, : len(chart)] = (points[:, :2] - centre) / size
    return out


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


def _videos(clips: list[np.ndarray]) -> torch.Tensor:
    """[(F, H, W, 3) uint8] -> (B, 3, F, H, W) in [-1, 1], as prepare feeds the VAE."""
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def encode_samples(samples: list[WorldSample], pipeline) -> list[dict]:
    """The latents ``prepare`` caches (target, reference, normal maps), for a batch of samples
    at once (the Wan VAE is many times faster per clip in a batch on a CPU)."""
    targets = pipeline.encode_video(_videos([s.target for s in samples]))
    references = pipeline.encode_video(_videos([s.reference[None] for s in samples]))
    normals = torch.from_numpy(np.stack([s.normals for s in samples])).permute(0, 4, 1, 2, 3)
    normal_latents = pipeline.encode_video(normals.float())
    return [
        {"target_latents": t, "reference_latents": r, "normal_latents": n}
        for t, r, n in zip(targets, references, normal_latents, strict=True)
    ]


def sample_tensors(sample: WorldSample, latents: dict, ray_convention: str = "reference") -> dict:
    """The tensors ``prepare`` caches for one sample (see ``training.prepare``), with its
    ``latents`` from ``encode_samples`` and rays in the given convention."""
    origin = sample.reference_c2w if ray_convention == "reference" else sample.c2w[0]
    rays = plucker_rays(sample.K, sample.c2w, SIZE, SIZE, reference_c2w=origin)
    blendshapes = np.zeros((FRAMES, BLENDSHAPES), np.float32)
    blendshapes[:, EYE_BLINK[0]] = blendshapes[:, EYE_BLINK[1]] = sample.eyes
    blendshapes[:, JAW_OPEN] = sample.mouth
    tensors = {
        **latents,
        "ray_latents": pack_plucker(torch.from_numpy(rays)[None].float())[0],
        "blendshapes": torch.from_numpy(blendshapes),
        "crop_landmarks": torch.from_numpy(sample.crop_landmarks).float(),
    }
    return {k: v.contiguous().cpu() for k, v in tensors.items()}


def sample_metadata(sample: WorldSample, blendshapes: torch.Tensor) -> dict[str, str]:
    """The index row ``prepare`` records (mode, the C1 filter's fields, the covered ranges)."""
    mode = {"frontal": Mode.FRONTAL_DYNAMIC, "novel": Mode.NOVEL_DYNAMIC}.get(
        sample.kind, Mode.ALL_DYNAMIC
    )
    change = float(np.ptp(blendshapes.numpy(), axis=0).max())
    # Measured by training's own function, as prepare measures a real sample.
    covered = sample_ranges(
        SimpleNamespace(
            head_pose=sample.head_pose,
            c2w=sample.c2w,
            K=sample.K,
            reference_c2w=sample.reference_c2w,
            height=SIZE,
        )
    )
    ranges = {key: f"{value:.3f}" for key, value in covered.items()}
    return {
        "mode": str(mode),
        "frames": str(FRAMES),
        "height": str(SIZE),
        "width": str(SIZE),
        "expression_change": f"{change:.4f}",
        "has_expression_change": str(change > 0.3).lower(),
        "has_camera_change": str(sample.kind == "moving").lower(),
        "has_crops": "false",
        "warnings": "",
        **ranges,
    }


def head_fraction(mask: np.ndarray) -> np.ndarray:
    """(k+1, h, w): the fraction of each latent cell's pixels on the head, per latent frame
    (frame 0 alone, then groups of 4, as the VAE folds them)."""
    groups = [mask[:1]] + [mask[i : i + 4] for i in range(1, len(mask), LATENT.frames_per_latent)]
    s = LATENT.spatial
    cells = [g.reshape(len(g), SIZE // s, s, SIZE // s, s).mean(axis=(0, 2, 4)) for g in groups]
    return np.stack(cells)


def _index_row(metadata: dict, name: str) -> dict:
    first = ("id", "file", "split", "mode")
    row = {**metadata, "file": f"samples/{name}.safetensors"}
    return {**{k: row[k] for k in first}, **{k: row[k] for k in sorted(row) if k not in first}}


def write_world(
    out: str | Path,
    pipeline,
    *,
    train_samples: int,
    val_samples: int,
    subjects: int,
    seed: int,
    world: str = "original",
) -> dict:
    """Write the world's samples three times, each folder with ``index.jsonl`` and the
    expression inputs' statistics that prepare writes (``expression_stats.json``):
    ``out/data`` (rays relative to the reference camera, as prepare writes them),
    ``out/data-first-frame-rays`` (the old convention, rays relative to the first output frame)
    and ``out/data-shuffled-codes`` (the noise floor: the training samples' expression codes
    shuffled between samples, the held-out ones as they are). Each held-out clip is also
    rendered with one factor at a time taken from a partner clip (``with_partners_factor``), in
    ``<folder>/counterfactual/<factor>/<id>.safetensors``, for the factors the world varies;
    ``out/truth.json`` names the partners. ``world``: a key of WORLDS. Returns counts."""
    from ..training.expression_stats import write_prepared_statistics

    spec = WORLDS[world]
    subjects = spec.subjects or subjects
    out = Path(out)
    rng = np.random.default_rng(seed)
    mesh = head_mesh()
    people = make_subjects(subjects, rng)
    points = face_points(np.random.default_rng(seed + 1))
    made_by = component_digests(pipeline)
    folders = {key: out / name for key, name in DATA_FOLDERS.items()}
    rows = {key: [] for key in folders}
    truth = {}
    for folder in folders.values():
        (folder / "samples").mkdir(parents=True, exist_ok=True)
    total = train_samples + val_samples
    kinds = spec.kinds
    plan = []
    for number in range(total):
        split = "train" if number < train_samples else "val"
        # Held-out: every kind with and without an expression change, in turn.
        kind = kinds[number % len(kinds)] if split == "val" else str(rng.choice(kinds))
        changes = (number // len(kinds)) % 2 == 0 if split == "val" else bool(rng.integers(2))
        plan.append((number, split, kind, changes))
    written, held_out = {}, []
    for start in range(0, total, ENCODE_BATCH):
        batch = plan[start : start + ENCODE_BATCH]
        samples = [draw_sample(mesh, people, points, rng, k, c, spec) for _, _, k, c in batch]
        for (number, split, kind, changes), sample, latents in zip(
            batch, samples, encode_samples(samples, pipeline), strict=True
        ):
            name = f"{split}-{number:05d}"
            for convention in RAY_CONVENTIONS:
                tensors = sample_tensors(sample, latents, convention)
                metadata = {
                    **sample_metadata(sample, tensors["blendshapes"]),
                    "id": name,
                    "clip": name,
                    "split": split,
                    "reference_clip": name,
                    **made_by,
                }
                folder = folders[convention]
                save_file(tensors, str(folder / "samples" / f"{name}.safetensors"), metadata)
                rows[convention].append(_index_row(metadata, name))
                if convention == "reference":
                    written[name] = (tensors, metadata)
            truth[name] = {
                "split": split,
                "kind": kind,
                "changes_expression": changes,
                "subject": sample.subject,
                "head_fraction": head_fraction(sample.head_mask).round(4).tolist(),
            }
            if split == "val":
                held_out.append((name, sample.draw))
            if number == train_samples:  # one held-out sample as pictures, to look at
                _save_strip(out / "example.png", sample)
    _write_shuffled(folders["shuffled"], written, np.random.default_rng(seed + 2))
    rows["shuffled"] = rows["reference"]
    _write_counterfactuals(folders, held_out, spec, mesh, people, points, pipeline, truth)
    for key, folder in folders.items():
        lines = "".join(json.dumps(row) + "\n" for row in rows[key])
        (folder / "index.jsonl").write_text(lines)
        write_prepared_statistics(folder)
    (out / "truth.json").write_text(json.dumps(truth))
    return {"train": train_samples, "val": val_samples, "subjects": subjects}


def _write_shuffled(folder: Path, written: dict, rng: np.random.Generator) -> None:
    """The noise floor's samples: each training sample with another's expression codes (a
    random cycle through all of them, so none keeps its own); held-out samples unchanged."""
    train = [name for name in written if name.startswith("train-")]
    order = [train[i] for i in rng.permutation(len(train))]
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    for name, (tensors, metadata) in written.items():
        if name in donor:
            codes = {key: written[donor[name]][0][key] for key in CODE_FIELDS}
            tensors = {**tensors, **codes}
        save_file(tensors, str(folder / "samples" / f"{name}.safetensors"), metadata)


def _write_counterfactuals(folders, held_out, spec, mesh, people, points, pipeline, truth):
    """Each held-out clip rendered again with one factor from its partner (the paired
    measure's x_B), for every factor the world varies; truth.json gets the partners."""
    names = [name for name, _ in held_out]
    draws = [draw for _, draw in held_out]
    partners = factor_partners(draws, spec.varies(len(people)))
    for name in names:
        truth[name]["partners"] = {}
    for factor, chosen in partners.items():
        changed = [
            with_partners_factor(draw, draws[j], factor)
            for draw, j in zip(draws, chosen, strict=True)
        ]
        for start in range(0, len(changed), ENCODE_BATCH):
            part = changed[start : start + ENCODE_BATCH]
            samples = [render_clip(mesh, people, points, d, spec.features) for d in part]
            for offset, (sample, latents) in enumerate(
                zip(samples, encode_samples(samples, pipeline), strict=True)
            ):
                number = start + offset
                name = names[number]
                truth[name]["partners"][factor] = names[chosen[number]]
                for key, folder in folders.items():
                    convention = "first-frame" if key == "first-frame" else "reference"
                    tensors = sample_tensors(sample, latents, convention)
                    target = folder / "counterfactual" / factor
                    target.mkdir(parents=True, exist_ok=True)
                    save_file(tensors, str(target / f"{name}.safetensors"))


def _save_strip(path: Path, sample: WorldSample) -> None:
    """The reference, then the target frames, above their normal maps (a PNG)."""
    from PIL import Image

    normals = ((sample.normals + 1) * 127.5).clip(0, 255).astype(np.uint8)
    normals[~sample.head_mask] = 0
    blank = np.zeros_like(sample.reference)
    top = np.concatenate([sample.reference, *sample.target], axis=1)
    bottom = np.concatenate([blank, *normals], axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).resize(
        (top.shape[1] * 2, top.shape[0] * 4), Image.NEAREST
    ).save(path)
