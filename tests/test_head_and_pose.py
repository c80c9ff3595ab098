"""Canonical face from the bundle, the template head, the portrait camera and retargeting."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from factorportrait.conditioning.framing import estimate_portrait_camera
from factorportrait.head_pose.canonical import load_canonical_face
from factorportrait.head_pose.retarget import retarget_head_poses
from factorportrait.head_pose.template import build_head_template, fit_proportions
from factorportrait.io.media import read_image
from factorportrait.viewpoint import (
    Trajectory,
    intrinsics_from_fov,
    invert_rigid,
    load_preset,
    orbit_c2w,
)
from factorportrait.viewpoint.paths import camera_path, view_of_camera


@pytest.fixture(scope="module")
def canonical(landmarker_path):
    return load_canonical_face(str(landmarker_path))


def test_canonical_face_from_the_bundle(canonical):
    assert canonical.vertices.shape == (468, 3) and canonical.faces.shape == (898, 3)
    assert canonical.uvs.min() >= 0 and canonical.uvs.max() <= 1
    mesh = trimesh.Trimesh(canonical.vertices, canonical.faces, process=False)
    # Head frame: x right, y up, z out of the face; normals point outwards (towards +z).
    assert mesh.face_normals[:, 2].mean() > 0.5
    nose_tip, chin, forehead = canonical.vertices[[1, 152, 10]]
    assert nose_tip[2] > 6 and chin[1] < -8 and forehead[1] > 7
    assert canonical.vertices[454, 0] > 7 > -7 > canonical.vertices[234, 0]


def test_template_head_is_a_closed_looking_head(canonical):
    head = build_head_template(canonical)
    np.testing.assert_allclose(head.face_vertices, canonical.vertices)  # no expression, no change
    # The skull reaches above and behind the face, neck and shoulders below it (the seam, the
    # shoulders and the face's exactness: tests/test_template.py).
    assert head.head_vertices[:, 1].max() > canonical.vertices[:, 1].max() + 2
    assert head.head_vertices[:, 2].min() < -10
    assert head.body_vertices[:, 1].min() < -15
    np.testing.assert_allclose(np.linalg.norm(head.head_normals, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(head.body_normals, axis=1), 1, atol=1e-6)


def test_proportions_follow_the_face_not_the_expression(canonical, tracker, pyfeat):
    face = tracker.track_image(read_image(pyfeat / "single_face.jpg"))
    proportions = fit_proportions(canonical, face.landmarks)
    assert np.prod(proportions) == pytest.approx(1.0)
    assert ((proportions > 0.85) & (proportions < 1.2)).all()
    # A face stretched to be 20% wider in the image gets a wider template.
    wide = face.landmarks.copy()
    wide[:, 0] = wide[:, 0].mean() + 1.2 * (wide[:, 0] - wide[:, 0].mean())
    wider = fit_proportions(canonical, wide)
    assert wider[0] / wider[1] > 1.1 * proportions[0] / proportions[1]
    # Opening the mouth (moving only lips and jaw landmarks) leaves the proportions alone.
    mouth = face.landmarks.copy()
    lower = mouth[:, 1] > mouth[13, 1]  # below the upper lip
    mouth[lower, 1] += 15
    np.testing.assert_allclose(fit_proportions(canonical, mouth), proportions, atol=1e-9)


def test_portrait_camera_reprojects_the_landmarks(canonical, tracker, pyfeat):
    face = tracker.track_image(read_image(pyfeat / "single_face.jpg"))
    head = build_head_template(canonical, fit_proportions(canonical, face.landmarks))
    K, c2w = estimate_portrait_camera(face, head.face_vertices, 562, 572)
    w2c = invert_rigid(c2w)
    points = head.face_vertices @ w2c[:3, :3].T + w2c[:3, 3]
    projected = points @ K.T
    projected = projected[:, :2] / projected[:, 2:]
    error = np.linalg.norm(projected - face.landmarks[:468, :2], axis=1)
    face_size = face.box[2] - face.box[0]
    assert np.median(error) < 0.04 * face_size
    assert 30 < np.linalg.norm(c2w[:3, 3]) < 200  # a photo taken from a plausible distance


@pytest.mark.parametrize("view", [(0, 0, 60, 0), (25, -10, 45, 5), (-70, 40, 120, -20)])
def test_view_of_camera_inverts_orbit(view):
    recovered = view_of_camera(orbit_c2w(*view))
    assert (
        recovered.azimuth,
        recovered.elevation,
        recovered.distance,
        recovered.roll,
    ) == pytest.approx(view)


def test_camera_path_starts_exactly_at_the_portrait_camera():
    # An off-centre portrait camera (not looking at the head centre).
    portrait = orbit_c2w(10, 5, 70, 3)
    portrait[:3, :3] = (
        portrait[:3, :3] @ Rotation.from_euler("xy", [4, -6], degrees=True).as_matrix()
    )
    for name in ("orbit", "dolly", "sweep"):
        _, c2w = camera_path(load_preset(name), 9, portrait, 64, 64)
        np.testing.assert_allclose(c2w[0], portrait, atol=1e-9)
    # A static novel view is a rotation about the head centre: same distance, turned 30 degrees.
    _, novel = camera_path(Trajectory.static(azimuth=30), 5, portrait, 64, 64)
    np.testing.assert_allclose(novel, np.broadcast_to(novel[0], novel.shape))
    assert np.linalg.norm(novel[0, :3, 3]) == pytest.approx(70)
    angle = np.degrees(np.arccos(portrait[:3, 3] @ novel[0, :3, 3] / 70**2))
    assert angle == pytest.approx(30, abs=0.5)


K64 = intrinsics_from_fov(30.0, 64, 64)


def _driving(yaws_deg, translations=None):
    """Driving heads (F,4,4) head -> camera: turned by the given yaws, 50 cm away."""
    frontal = np.diag([1.0, -1.0, -1.0])
    poses = np.tile(np.eye(4), (len(yaws_deg), 1, 1))
    poses[:, :3, :3] = (
        Rotation.from_euler("y", np.asarray(yaws_deg, float)[:, None], degrees=True).as_matrix()
        @ frontal
    )
    poses[:, :3, 3] = np.tile([0.0, 0.0, 50.0], (len(yaws_deg), 1))
    if translations is not None:
        poses[:, :3, 3] = translations
    return poses


def test_relative_retargeting_applies_the_motion_in_the_camera_frame():
    portrait = orbit_c2w(20, 10, 60)  # the photo was taken from the side and above
    driving = _driving([0, 10, 20])
    poses = retarget_head_poses(driving, portrait, K64)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-12)
    # Seen from the portrait camera, the head turned by exactly the driving yaw about the
    # camera's vertical axis, and (the driving head did not move) its centre stayed put.
    w2c = invert_rigid(portrait)[:3, :3]
    for pose, yaw in zip(poses, [0, 10, 20], strict=True):
        in_camera = w2c @ pose[:3, :3] @ w2c.T
        np.testing.assert_allclose(
            in_camera, Rotation.from_euler("y", yaw, degrees=True).as_matrix(), atol=1e-9
        )
        np.testing.assert_allclose(pose[:3, 3], 0.0, atol=1e-9)
    half = retarget_head_poses(driving, portrait, K64, strength=0.5)
    assert Rotation.from_matrix(half[2, :3, :3]).magnitude() == pytest.approx(np.radians(10))


def test_relative_retargeting_moves_the_head_as_the_picture_shows():
    """Towards the camera: the same change of face scale (depth ratio); across the picture:
    the same shift in framed pixels. Known answers for a portrait 60 cm away, head-on."""
    portrait = orbit_c2w(0, 0, 60)
    # The driving head comes from 50 to 40 cm (its face grows 1.25x) and moves 2 cm right at
    # 50 cm: 2 * f / 50 pixels.
    driving = _driving([0, 0, 0], [[0, 0, 50.0], [0, 0, 40.0], [2.0, 0, 50.0]])
    poses = retarget_head_poses(driving, portrait, K64)
    in_camera = invert_rigid(portrait) @ poses  # head -> portrait camera
    depth = in_camera[:, 2, 3]
    assert depth[1] == pytest.approx(60 * 40 / 50)  # 48 cm: the portrait's face grows 1.25x
    shift_px = K64[0, 0] * in_camera[2, 0, 3] / in_camera[2, 2, 3]
    assert shift_px == pytest.approx(K64[0, 0] * 2.0 / 50)
    # Half strength: half the pixel shift, the square root of the scale change.
    half = invert_rigid(portrait) @ retarget_head_poses(driving, portrait, K64, strength=0.5)
    assert half[1, 2, 3] == pytest.approx(60 * (40 / 50) ** 0.5)
    assert K64[0, 0] * half[2, 0, 3] / half[2, 2, 3] == pytest.approx(K64[0, 0] * 1.0 / 50)


def test_absolute_retargeting_copies_the_pose_towards_the_camera():
    portrait = orbit_c2w(0, 0, 60)
    driving = _driving([15, 15], [[1.0, -2.0, 45.0], [0.0, 0.0, 50.0]])
    poses = retarget_head_poses(driving, portrait, K64, relative=False)
    np.testing.assert_allclose(invert_rigid(portrait) @ poses, driving, atol=1e-9)
