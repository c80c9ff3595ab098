"""The toy world's head and its pictures: a textured head (an ellipsoid with a nose, rendered
by our own rasteriser) whose colours are the identity (skin, hair, hairline and a coloured mark
per subject), posed by yaw and pitch, with an expression (mouth opening and eye closure painted
on the face), seen by a camera in front of a background painted on the sky at infinity (so a
camera turn shows in the background, apart from the head); and the face points whose
head-frame positions are the C3 ablation's expression codes (as the real C3 codes since issue
27). ``world`` draws each clip's factors and renders them here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ..head_pose.rasterizer import rasterize
from ..viewpoint import invert_rigid

SIZE = 64
RADII_CM = np.array([7.5, 10.0, 8.5])  # the head ellipsoid's half-axes: x, y, z (face out)
LANDMARKS = 478


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
