"""The template: one seamless head (the fitted canonical face, untouched, joined to the skull) on
neck and shoulders that stay in the world while the head turns."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from factorportrait.conditioning.framing import estimate_portrait_camera, frame_portrait
from factorportrait.head_pose import render_head
from factorportrait.head_pose.canonical import NUM_MESH_VERTICES, load_canonical_face
from factorportrait.head_pose.rasterizer import rasterize
from factorportrait.head_pose.template import SCALE_RANGE, build_head_template, fit_proportions
from factorportrait.io.media import read_image
from factorportrait.viewpoint import invert_rigid

EXAMPLE_PORTRAIT = "assets/example_portrait.jpg"
SIZE = 256


@pytest.fixture(scope="module")
def canonical(landmarker_path):
    return load_canonical_face(str(landmarker_path))


@pytest.fixture(scope="module")
def portrait(canonical, tracker):
    """The example portrait at the default framing: its fitted template and camera."""
    from pathlib import Path

    image = read_image(Path(__file__).resolve().parents[1] / EXAMPLE_PORTRAIT)
    _, face, _ = frame_portrait(image, tracker.track_image(image), SIZE, SIZE)
    template = build_head_template(canonical, fit_proportions(canonical, face.landmarks))
    K, c2w = estimate_portrait_camera(face, template.face_vertices, SIZE, SIZE)
    return template, K, c2w


def _yaw(degrees: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("y", degrees, degrees=True).as_matrix()
    return pose


def _angles_across_the_join(template, K, c2w, head_pose, max_depth_step_cm=0.5):
    """Angles (degrees) between the rendered normals of neighbouring pixels where one shows the
    face and the other the rest of the head, on one surface (no depth step between them)."""
    head_to_cam = invert_rigid(c2w) @ head_pose
    vertices = template.head_vertices @ head_to_cam[:3, :3].T + head_to_cam[:3, 3]
    normals = template.head_normals @ head_to_cam[:3, :3].T
    head = rasterize(vertices[None], normals[None], template.head_faces, K[None], SIZE, SIZE)
    face_faces = template.head_faces[(template.head_faces < NUM_MESH_VERTICES).all(1)]
    face = rasterize(vertices[None], normals[None], face_faces, K[None], SIZE, SIZE)
    depth, normal = head.depth[0], head.normals[0]
    on_face = face.mask[0] & (np.abs(face.depth[0] - depth) < 1e-4)  # the face is what is seen
    elsewhere = head.mask[0] & ~on_face
    angles = []
    for a, b in [(np.s_[:, :-1], np.s_[:, 1:]), (np.s_[:-1, :], np.s_[1:, :])]:
        for one, other in [(a, b), (b, a)]:
            pair = (
                on_face[one]
                & elsewhere[other]
                & (np.abs(depth[one] - depth[other]) < max_depth_step_cm)
            )
            cosine = (normal[one][pair] * normal[other][pair]).sum(-1)
            angles.append(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
    return np.concatenate(angles)


@pytest.mark.parametrize("yaw", [0.0, 30.0, -30.0])
def test_no_seam_where_the_face_meets_the_skull(portrait, yaw):
    template, K, c2w = portrait
    angles = _angles_across_the_join(template, K, c2w, _yaw(yaw))
    assert len(angles) > 50  # the join is in view all round the face
    # On a smooth surface neighbouring pixels differ by (pixel footprint) / (radius of
    # curvature): here about 0.14 cm over the head's tightest curves (~1 cm, the jaw's corner),
    # some 8 degrees, twice that towards the silhouette. A seam is a jump that no resolution
    # removes: a face laid over a separate skull turns by 60-70 degrees across its edge.
    assert angles.max() < 20.0
    # One closed surface: the face is joined to the skull, not laid over it.
    head = trimesh.Trimesh(template.head_vertices, template.head_faces, process=False)
    assert head.is_watertight and head.is_winding_consistent and head.volume > 0


def test_shoulders_in_frame_and_fixed_in_the_world(portrait):
    template, K, c2w = portrait
    poses = np.stack([np.eye(4), _yaw(30.0)])
    render = render_head(template, poses, np.stack([K, K]), np.stack([c2w, c2w]), SIZE, SIZE)
    rest, turned = render.mask
    # Shoulders are 2.5-3 face widths across and the frame 2 face heights: the bottom rows hold
    # body on both sides of the neck (which is under one face width, the middle third).
    bottom = rest[-4:]
    assert bottom[:, : SIZE // 4].any(1).all() and bottom[:, -SIZE // 4 :].any(1).all()
    assert bottom[:, SIZE // 3 : -SIZE // 3].all()  # the chest under the neck
    # No gap between chin and chest: the middle column is one run from the crown down.
    column = rest[:, SIZE // 2]
    first = np.argmax(column)
    assert first < SIZE // 4 and column[first:].all()
    # Turning the head moves the head only: below the chin's reach the body is unchanged.
    body_rows = np.s_[-SIZE // 8 :]
    np.testing.assert_array_equal(turned[body_rows], rest[body_rows])
    np.testing.assert_array_equal(render.normals[1][body_rows], render.normals[0][body_rows])
    assert (turned != rest).sum() > 0.01 * SIZE * SIZE  # while the head did turn


def test_neck_joins_head_and_shoulders(canonical):
    template = build_head_template(canonical)
    head = trimesh.Trimesh(template.head_vertices, template.head_faces, process=False)
    body = trimesh.Trimesh(template.body_vertices, template.body_faces, process=False)
    assert body.is_watertight and body.is_winding_consistent and body.volume > 0
    assert len(body.split(only_watertight=False)) == 1  # neck and shoulders are one piece
    # The neck's top is buried in the head at rest and stays buried as the head turns.
    neck_top = template.body_vertices[
        template.body_vertices[:, 1] > template.body_vertices[:, 1].max() - 1.0
    ]
    for yaw in (0.0, 30.0, -30.0):
        pose = _yaw(yaw)
        in_head_frame = (neck_top - pose[:3, 3]) @ pose[:3, :3]
        assert head.contains(in_head_frame).all()
    # Shoulders 2.5-3 face widths across (face width: the canonical face's ear-to-ear span).
    face_width = np.ptp(template.face_vertices[:, 0])
    assert 2.5 < np.ptp(template.body_vertices[:, 0]) / face_width < 3.0


@pytest.mark.parametrize(
    "proportions",
    [
        None,
        (SCALE_RANGE[0], SCALE_RANGE[1], 1 / (SCALE_RANGE[0] * SCALE_RANGE[1])),
        (1.1, 0.9, 1.0),
    ],
)
def test_face_is_exactly_the_fitted_canonical_face(canonical, proportions):
    template = build_head_template(canonical, proportions)
    scales = np.ones(3) if proportions is None else np.asarray(proportions)
    # Bit for bit: these vertices place the head and project the landmarks.
    np.testing.assert_array_equal(template.face_vertices, canonical.vertices * scales)
    np.testing.assert_array_equal(template.head_faces[: len(canonical.faces)], canonical.faces)
    # Nothing else of the head covers the face: rays from the front at the centres of the
    # face's front-facing triangles first hit the face.
    head = trimesh.Trimesh(template.head_vertices, template.head_faces, process=False)
    face = trimesh.Trimesh(template.face_vertices, canonical.faces, process=False)
    origins = face.triangles_center[face.face_normals[:, 2] > 0.2] + [0.0, 0.0, 30.0]
    _, rays, triangles = head.ray.intersects_location(
        origins, np.tile([0.0, 0.0, -1.0], (len(origins), 1)), multiple_hits=False
    )
    assert len(rays) == len(origins)
    assert (template.head_faces[triangles] < NUM_MESH_VERTICES).all()
