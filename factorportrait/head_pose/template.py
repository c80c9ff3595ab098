"""The template head: the canonical face topology fitted to the portrait, closed into a head.

- Face: MediaPipe's canonical mesh (468 vertices, landmark order) with the portrait's
  proportions (width, height, depth scales fitted on landmarks that expressions barely move).
  The shape stays neutral: no expression is baked in, so the normal maps carry head pose only.
- Skull: an ellipsoid cranium, pushed in just behind the face where the face covers it, so
  forehead and cheeks run on into it: the normal maps show a head, not a floating mask.
- Neck: an elliptic cylinder below the skull that stays put in the world while the head turns.

Everything is in the head frame, cm. trimesh builds the primitives and the vertex normals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ..procrustes import umeyama
from .canonical import NUM_MESH_VERTICES, CanonicalFace

# Landmarks that expressions barely move: nose, eye corners, forehead, cheekbones, temples.
STABLE_LANDMARKS = np.array(
    [
        1,
        2,
        4,
        5,
        6,
        98,
        168,
        195,
        197,
        327,
        33,
        133,
        263,
        362,
        9,
        10,
        67,
        108,
        151,
        297,
        337,
        50,
        93,
        116,
        234,
        280,
        323,
        345,
        454,
        127,
        162,
        356,
        389,
    ]
)
SCALE_RANGE = (0.85, 1.2)

# Proxy geometry for the canonical face (cm); scaled with the fitted proportions.
_SKULL_CENTRE = np.array([0.0, 1.0, -2.5])
_SKULL_AXES = np.array([7.9, 10.8, 9.5])  # semi-axes x, y, z
_NECK_CENTRE = np.array([0.0, -12.0, -4.5])
_NECK_RADII = np.array([5.2, 5.0])  # x, z
_NECK_HEIGHT = 14.0
_FACE_MARGIN = 0.3  # the skull's front stays this far behind the face surface


@dataclass(frozen=True)
class HeadTemplate:
    head_vertices: np.ndarray  # (Vh, 3): face (first 468, landmark order) then skull; posed
    head_faces: np.ndarray  # (Th, 3)
    head_normals: np.ndarray  # (Vh, 3) unit, outward
    body_vertices: np.ndarray  # (Vb, 3): neck, fixed in the world
    body_faces: np.ndarray
    body_normals: np.ndarray
    proportions: np.ndarray  # (3,) fitted x, y, z scales of the canonical face

    @property
    def face_vertices(self) -> np.ndarray:
        return self.head_vertices[:NUM_MESH_VERTICES]


def fit_proportions(canonical: CanonicalFace, landmarks_px: np.ndarray) -> np.ndarray:
    """Per-axis scales of the canonical face that best match a tracked face's shape.

    landmarks_px: (>=468, 3) MediaPipe landmarks in pixels (x right, y down, z away from the
    camera). Overall size is not observable from one photo (it trades off against distance), so
    the scales are normalised to a geometric mean of 1: proportions only.
    """
    target = landmarks_px[STABLE_LANDMARKS] * np.array([1.0, -1.0, -1.0])  # to y up, z out
    source = canonical.vertices[STABLE_LANDMARKS]
    scale, rotation, translation = umeyama(target, source)
    aligned = scale * target @ rotation.T + translation  # tracked face in the canonical frame
    centred_src = source - source.mean(0)
    centred_dst = aligned - aligned.mean(0)
    axes = (centred_src * centred_dst).sum(0) / (centred_src**2).sum(0)
    axes = np.clip(axes / np.prod(axes) ** (1 / 3), *SCALE_RANGE)
    return axes / np.prod(axes) ** (1 / 3)


def build_head_template(
    canonical: CanonicalFace, proportions: np.ndarray | None = None
) -> HeadTemplate:
    proportions = np.ones(3) if proportions is None else np.asarray(proportions, float)
    face = trimesh.Trimesh(canonical.vertices * proportions, canonical.faces, process=False)

    # Skull: an ellipsoid (a cranium), pushed in just behind the face wherever the face covers
    # it, so the forehead and cheeks run on into the skull without a step and nothing pokes
    # through the face.
    sphere = trimesh.creation.icosphere(subdivisions=3)
    unit = sphere.vertices
    centre = _SKULL_CENTRE * proportions
    skull_vertices = centre + unit * (_SKULL_AXES * proportions)
    covered, face_z = _face_depth_at(skull_vertices[:, :2], face)
    front = unit[:, 2] > 0
    skull_vertices[:, 2] = np.where(
        front & covered,
        np.minimum(skull_vertices[:, 2], face_z - _FACE_MARGIN),
        skull_vertices[:, 2],
    )
    # Well inside the face's outline that surface is never seen: drop it (a third less work
    # for the rasteriser).
    interior, _ = _face_depth_at(centre[:2] + (skull_vertices[:, :2] - centre[:2]) * 1.3, face)
    hidden = front & interior
    skull = trimesh.Trimesh(
        skull_vertices, sphere.faces[~hidden[sphere.faces].all(1)], process=False
    )
    skull.remove_unreferenced_vertices()

    head = trimesh.util.concatenate([face, skull])
    neck = trimesh.creation.cylinder(radius=1.0, height=_NECK_HEIGHT, sections=32)
    neck.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))  # along y
    neck_vertices = neck.vertices * np.array([_NECK_RADII[0], 1.0, _NECK_RADII[1]])
    neck_vertices = neck_vertices * proportions + _NECK_CENTRE * proportions
    neck = trimesh.Trimesh(neck_vertices, neck.faces, process=True)
    return HeadTemplate(
        head_vertices=np.asarray(head.vertices, float),
        head_faces=np.asarray(head.faces, np.int64),
        head_normals=np.asarray(head.vertex_normals, float),
        body_vertices=np.asarray(neck.vertices, float),
        body_faces=np.asarray(neck.faces, np.int64),
        body_normals=np.asarray(neck.vertex_normals, float),
        proportions=proportions,
    )


def _face_depth_at(xy: np.ndarray, face: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    """For points (P, 2) seen from the front: whether the face covers them, and the face's
    depth (z) there (the frontmost layer; -inf where uncovered)."""
    tri = face.vertices[face.faces]  # (T, 3, 3)
    v0, v1 = tri[:, 1, :2] - tri[:, 0, :2], tri[:, 2, :2] - tri[:, 0, :2]
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    det = np.where(np.abs(det) > 1e-12, det, np.inf)  # edge-on triangles cover nothing
    rel = xy[:, None, :] - tri[None, :, 0, :2]  # (P, T, 2)
    u = (rel[..., 0] * v1[:, 1] - rel[..., 1] * v1[:, 0]) / det
    v = (v0[:, 0] * rel[..., 1] - v0[:, 1] * rel[..., 0]) / det
    inside = (u >= 0) & (v >= 0) & (u + v <= 1)
    z = (
        tri[None, :, 0, 2]
        + u * (tri[None, :, 1, 2] - tri[None, :, 0, 2])
        + v * (tri[None, :, 2, 2] - tri[None, :, 0, 2])
    )
    depth = np.where(inside, z, -np.inf).max(1)
    return inside.any(1), depth
