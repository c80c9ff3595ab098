"""Cameras around the head: intrinsics and the (azimuth, elevation, distance, roll) rig."""

import numpy as np
import pytest

from factorportrait.viewpoint import intrinsics_from_fov, invert_rigid, orbit_c2w


def test_intrinsics_principal_point_and_focal():
    K = intrinsics_from_fov(90.0, 64, 96)
    # A 90 degree vertical fov sees half the height at unit depth: f = (H/2) / tan(45) = 32.
    np.testing.assert_allclose(K, [[32, 0, 48], [0, 32, 32], [0, 0, 1]], atol=1e-12)
    # The top edge of the image (v = 0) lies exactly at the fov's half-angle.
    ray = np.linalg.inv(K) @ [48, 0, 1]
    assert np.degrees(np.arctan2(-ray[1], ray[2])) == pytest.approx(45.0)


def test_frontal_camera_looks_down_minus_z_from_plus_z():
    c2w = orbit_c2w(0, 0, 60)
    np.testing.assert_allclose(c2w[:3, 3], [0, 0, 60], atol=1e-12)
    np.testing.assert_allclose(c2w[:3, 0], [1, 0, 0], atol=1e-12)  # image right = world x
    np.testing.assert_allclose(c2w[:3, 1], [0, -1, 0], atol=1e-12)  # image down = world -y
    np.testing.assert_allclose(c2w[:3, 2], [0, 0, -1], atol=1e-12)  # looks at the face


def test_angle_signs():
    right = orbit_c2w(30, 0, 50)[:3, 3]
    up = orbit_c2w(0, 30, 50)[:3, 3]
    assert right[0] > 0 and abs(right[1]) < 1e-9
    assert up[1] > 0 and abs(up[0]) < 1e-9
    np.testing.assert_allclose(np.linalg.norm(right), 50)
    # Positive roll turns the camera's x axis towards its y (down): clockwise on screen.
    rolled = orbit_c2w(0, 0, 50, 90)
    np.testing.assert_allclose(rolled[:3, 0], [0, -1, 0], atol=1e-12)


@pytest.mark.parametrize("elevation", [-89.0, -45.0, 0.0, 60.0, 89.0, 90.0])
def test_every_view_is_a_rigid_camera_looking_at_the_head(elevation):
    azimuth = np.linspace(-400, 400, 37)
    c2w = orbit_c2w(azimuth, elevation, 42.0, roll_deg=np.linspace(-170, 170, 37))
    R, t = c2w[:, :3, :3], c2w[:, :3, 3]
    np.testing.assert_allclose(
        R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 42.0)
    forward = R[:, :, 2]
    np.testing.assert_allclose(forward, -t / 42.0, atol=1e-12)  # the optical axis hits the origin


def test_no_flip_through_the_poles():
    # Small steps in elevation across the pole region give small rotations (a look-at camera
    # with a fixed up vector would spin 180 degrees here).
    elevation = np.linspace(80, 90, 201)
    R = orbit_c2w(15.0, elevation, 40.0)[:, :3, :3]
    step_angles = np.degrees(
        np.arccos(np.clip((np.einsum("fij,fij->f", R[1:], R[:-1]) - 1) / 2, -1, 1))
    )
    assert step_angles.max() < 0.1


def test_invert_rigid_matches_numpy():
    c2w = orbit_c2w([10, -70], [20, -5], [30, 90], [5, 45])
    np.testing.assert_allclose(invert_rigid(c2w), np.linalg.inv(c2w), atol=1e-12)
