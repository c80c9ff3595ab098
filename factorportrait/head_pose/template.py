"""The template: the canonical face topology fitted to the portrait, closed into a head, on an
upper body (README: Status, pose and expression factors).

- Face: MediaPipe's canonical mesh (468 vertices, landmark order) with the portrait's
  proportions (width, height, depth scales fitted on landmarks that expressions barely move).
  The shape stays neutral: no expression is baked in, so the normal maps carry head pose only.
- Skull: an ellipsoid cranium with a hole cut where the face is, stitched to the face's outline
  and faired into it: face and skull are one closed surface whose normals run on across the join
  (no seam in the normal maps).
- Body: neck and shoulders swept along a profile, from inside the head down out of the frame;
  it stays put in the world while the head turns.

Everything is in the head frame (x right, y up, z out of the face), cm. trimesh builds the
icosphere, outline, adjacency and vertex normals; what is hand-written (the loop stitching, the
fairing solve, the swept body) has no trimesh counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from scipy import sparse
from scipy.interpolate import PchipInterpolator
from scipy.sparse.linalg import spsolve

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
_SKULL_AXES = np.array([8.6, 10.8, 9.5])  # semi-axes x, y, z: wider than the face, as with hair
_SKULL_SUBDIVISIONS = 3  # icosphere level: 642 vertices before the face's hole is cut
# Skull vertices this close to the face's outline (radians, seen from the skull's centre) are
# cut too, leaving room for one band of triangles between the outline and the skull.
_HOLE_MARGIN = 0.1
_BLEND_RINGS = 3  # rings of skull vertices around the hole that are faired into the face

# Neck and shoulders, top to bottom: height y, half-width, half-depth, centre z (cm). The neck
# starts inside the skull; the shoulders slope down at about 30 degrees to a half-width of 2.7
# face half-widths, round over and run down out of any portrait frame.
_BODY_PROFILE = np.array(
    [
        [-3.0, 4.4, 4.2, -3.8],
        [-9.0, 5.2, 4.9, -4.4],
        [-12.5, 5.4, 5.0, -4.5],
        [-15.5, 10.5, 7.0, -5.5],
        [-18.5, 15.5, 8.8, -6.0],
        [-21.0, 19.2, 9.8, -6.5],
        [-24.0, 20.6, 10.0, -6.5],
        [-28.0, 20.8, 10.0, -6.5],
        [-45.0, 20.8, 10.0, -6.5],
    ]
)
_BODY_RING_SPACING = 1.5  # cm along the profile
_BODY_SECTIONS = 32


@dataclass(frozen=True)
class HeadTemplate:
    head_vertices: np.ndarray  # (Vh, 3): face (first 468, landmark order) then skull; posed
    head_faces: np.ndarray  # (Th, 3)
    head_normals: np.ndarray  # (Vh, 3) unit, outward
    body_vertices: np.ndarray  # (Vb, 3): neck and shoulders, fixed in the world
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
    head = _closed_head(canonical.vertices * proportions, canonical.faces, proportions)
    body = _upper_body(proportions)
    return HeadTemplate(
        head_vertices=np.asarray(head.vertices, float),
        head_faces=np.asarray(head.faces, np.int64),
        head_normals=np.asarray(head.vertex_normals, float),
        body_vertices=np.asarray(body.vertices, float),
        body_faces=np.asarray(body.faces, np.int64),
        body_normals=np.asarray(body.vertex_normals, float),
        proportions=proportions,
    )


def _closed_head(
    face_vertices: np.ndarray, face_faces: np.ndarray, proportions: np.ndarray
) -> trimesh.Trimesh:
    """Face + skull as one closed surface; the face's vertices come first and never move."""
    face = trimesh.Trimesh(face_vertices, face_faces, process=False)
    centre, axes = _SKULL_CENTRE * proportions, _SKULL_AXES * proportions
    # The face's open outline (the eyes and mouth are closed in the canonical mesh), in order.
    outline = np.asarray(face.outline().entities[0].points[:-1])

    # The skull: an ellipsoid, less the part the face covers seen from its centre, charted
    # by direction so that "covered" is a point-in-polygon test.
    sphere = trimesh.creation.icosphere(subdivisions=_SKULL_SUBDIVISIONS)
    skull_chart = _direction_chart(sphere.vertices)
    outline_chart = _direction_chart((face_vertices[outline] - centre) / axes)
    cut = _inside_polygon(skull_chart, outline_chart) | (
        _distance_to_polygon(skull_chart, outline_chart) < _HOLE_MARGIN
    )
    kept_faces = sphere.faces[~cut[sphere.faces].any(1)]
    skull = trimesh.Trimesh(centre + sphere.vertices * axes, kept_faces, process=False)
    skull.remove_unreferenced_vertices()
    hole_loops = skull.outline().entities
    if len(hole_loops) != 1:  # a margin too small for the icosphere's spacing
        raise ValueError(f"template skull: the face's hole has {len(hole_loops)} outlines")
    hole = np.asarray(hole_loops[0].points[:-1])

    offset = len(face_vertices)
    hole_chart = _direction_chart((skull.vertices[hole] - centre) / axes)
    band = _stitch_loops(
        outline,
        np.arctan2(outline_chart[:, 1], outline_chart[:, 0]),
        hole + offset,
        np.arctan2(hole_chart[:, 1], hole_chart[:, 0]),
    )
    vertices = np.concatenate([face_vertices, skull.vertices])
    faces = np.concatenate([face_faces, skull.faces + offset, band])
    head = trimesh.Trimesh(vertices, faces, process=False)
    # The zipper winds every band triangle alike; make that agree with the face's winding.
    trimesh.repair.fix_winding(head)

    # Fair the skull around the hole into the face: those vertices minimise the squared
    # umbrella Laplacian over the whole head, with the face and the far skull held, so the
    # surface's tangent runs on across the outline instead of folding there. (trimesh's filters
    # are iterated Laplacian steps: with the face pinned they settle into a membrane, which
    # meets the face at an angle.)
    free = np.zeros(len(vertices), bool)
    free[hole + offset] = True
    adjacency = head.edges_sparse.tocsr()
    for _ in range(_BLEND_RINGS - 1):
        free |= adjacency @ free
    free[:offset] = False
    head.vertices = _fair(np.asarray(head.vertices), adjacency, free)
    return head


def _direction_chart(directions: np.ndarray) -> np.ndarray:
    """Directions (P, 3) to a plane: the azimuthal equidistant chart around +z (out of the
    face), one-to-one over the whole sphere but the back pole."""
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    polar = np.arccos(np.clip(unit[:, 2], -1.0, 1.0))
    azimuth = np.arctan2(unit[:, 1], unit[:, 0])
    return polar[:, None] * np.stack([np.cos(azimuth), np.sin(azimuth)], 1)


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: does a ray from each point towards +x cross the polygon's edges an odd
    number of times."""
    start, end = polygon, np.roll(polygon, -1, axis=0)
    crosses = (start[None, :, 1] > points[:, None, 1]) != (end[None, :, 1] > points[:, None, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = start[:, 0] + (points[:, None, 1] - start[:, 1]) * (end[:, 0] - start[:, 0]) / (
            end[:, 1] - start[:, 1]
        )
    return (crosses & (points[:, None, 0] < x_cross)).sum(1) % 2 == 1


def _distance_to_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    start, edge = polygon, np.roll(polygon, -1, axis=0) - polygon
    t = ((points[:, None] - start) * edge).sum(-1) / (edge**2).sum(-1)
    nearest = start + np.clip(t, 0.0, 1.0)[..., None] * edge
    return np.linalg.norm(points[:, None] - nearest, axis=-1).min(1)


def _stitch_loops(
    inner: np.ndarray, inner_angle: np.ndarray, outer: np.ndarray, outer_angle: np.ndarray
) -> np.ndarray:
    """Triangles joining two closed vertex loops around the same axis, given each vertex's
    angle around it: both loops are walked once in increasing angle, always advancing the one
    whose next vertex comes first (the classic zipper)."""
    loops = []
    for loop, angle in ((inner, inner_angle), (outer, outer_angle)):
        order = np.argsort(angle)
        loops.append((loop[order], angle[order]))
    (inner, inner_angle), (outer, outer_angle) = loops
    # Start both at their smallest angle; walk len(inner) + len(outer) steps.
    i = j = 0
    triangles = []
    for _ in range(len(inner) + len(outer)):
        next_inner = inner_angle[(i + 1) % len(inner)] + 2 * np.pi * ((i + 1) // len(inner))
        next_outer = outer_angle[(j + 1) % len(outer)] + 2 * np.pi * ((j + 1) // len(outer))
        if j >= len(outer) or (i < len(inner) and next_inner <= next_outer):
            triangles.append(
                [inner[i % len(inner)], outer[j % len(outer)], inner[(i + 1) % len(inner)]]
            )
            i += 1
        else:
            triangles.append(
                [inner[i % len(inner)], outer[j % len(outer)], outer[(j + 1) % len(outer)]]
            )
            j += 1
    return np.array(triangles, np.int64)


def _fair(vertices: np.ndarray, adjacency: sparse.csr_matrix, free: np.ndarray) -> np.ndarray:
    """Moves the free vertices to minimise sum |L x|^2 (L: umbrella Laplacian, x - mean of the
    neighbours), the others held: a discrete thin plate between the held parts."""
    degree = np.asarray(adjacency.sum(1)).ravel()
    laplacian = (
        sparse.identity(len(vertices), format="csr") - sparse.diags(1.0 / degree) @ adjacency
    )
    free_columns, held_columns = laplacian[:, free], laplacian[:, ~free]
    lhs = (free_columns.T @ free_columns).tocsc()
    rhs = -(free_columns.T @ (held_columns @ vertices[~free]))
    faired = vertices.copy()
    faired[free] = np.column_stack([spsolve(lhs, rhs[:, k]) for k in range(3)])
    return faired


def _upper_body(proportions: np.ndarray) -> trimesh.Trimesh:
    """Neck and shoulders: elliptic rings swept down ``_BODY_PROFILE``, closed at both ends.

    Hand-written because trimesh's sweeps keep one cross-section along the path; this one
    widens from a neck into shoulders."""
    profile = _BODY_PROFILE
    # Rings evenly spaced along the front-view outline (half-width against height), so the
    # shoulders' curve gets as many rings as the straight neck and sides.
    step = np.linalg.norm(np.diff(profile[:, :2], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(step)])
    rings = PchipInterpolator(arc, profile)(
        np.linspace(0.0, arc[-1], int(np.ceil(arc[-1] / _BODY_RING_SPACING)) + 1)
    )
    angle = np.linspace(0.0, 2 * np.pi, _BODY_SECTIONS, endpoint=False)
    y, half_width, half_depth, centre_z = rings.T
    grid = np.stack(
        [
            half_width[:, None] * np.cos(angle),
            np.repeat(y[:, None], _BODY_SECTIONS, 1),
            centre_z[:, None] + half_depth[:, None] * np.sin(angle),
        ],
        -1,
    )
    count = len(rings)
    index = np.arange(count * _BODY_SECTIONS).reshape(count, _BODY_SECTIONS)
    here, right = index[:-1], np.roll(index[:-1], -1, axis=1)
    below, below_right = index[1:], np.roll(index[1:], -1, axis=1)
    # Angle runs from +x towards +z and rings run down: (here, right, below) winds outwards.
    sides = np.concatenate(
        [
            np.stack([here, right, below], -1).reshape(-1, 3),
            np.stack([right, below_right, below], -1).reshape(-1, 3),
        ]
    )
    top, bottom = count * _BODY_SECTIONS, count * _BODY_SECTIONS + 1
    caps = np.concatenate(
        [
            np.stack([np.full(_BODY_SECTIONS, top), np.roll(index[0], -1), index[0]], -1),
            np.stack([np.full(_BODY_SECTIONS, bottom), index[-1], np.roll(index[-1], -1)], -1),
        ]
    )
    vertices = np.concatenate(
        [grid.reshape(-1, 3), [[0.0, y[0], centre_z[0]], [0.0, y[-1], centre_z[-1]]]]
    )
    return trimesh.Trimesh(vertices * proportions, np.concatenate([sides, caps]), process=False)
