"""Plücker ray maps: the conventions in the README (Cameras and trajectories), against an independent reference."""

import numpy as np
import pytest
import torch

from factorportrait.errors import InputError
from factorportrait.viewpoint import intrinsics_from_fov, orbit_c2w, plucker_rays

H, W = 12, 16


def _cameras(azimuth, elevation, distance, roll=0.0, fov=40.0):
    c2w = orbit_c2w(azimuth, elevation, distance, roll)
    return intrinsics_from_fov(np.broadcast_to(fov, c2w.shape[:1]), H, W), c2w


def _reference(K, c2w, height, width, reference_c2w):
    """Per-pixel loop straight from the definition: slow, obvious, independent."""
    first_inv = np.linalg.inv(reference_c2w)
    scale = np.linalg.norm(reference_c2w[:3, 3])
    out = np.zeros((len(c2w), 6, height, width))
    for f in range(len(c2w)):
        rel = first_inv @ c2w[f]
        origin = rel[:3, 3] / scale
        for y in range(height):
            for x in range(width):
                d_cam = np.linalg.solve(K[f], [x + 0.5, y + 0.5, 1.0])
                d = rel[:3, :3] @ d_cam
                d /= np.linalg.norm(d)
                out[f, :3, y, x] = np.cross(origin, d)
                out[f, 3:, y, x] = d
    return out


def test_matches_reference_on_a_general_path():
    K, c2w = _cameras(
        [0, 25, -40, 10],
        [0, 10, -20, 35],
        [60, 45, 80, 50],
        [0, 15, -30, 5],
        fov=np.array([40.0, 30.0, 55.0, 20.0]),
    )
    rays = plucker_rays(K, c2w, H, W, reference_c2w=c2w[0])
    assert rays.shape == (4, 6, H, W) and rays.dtype == np.float32
    np.testing.assert_allclose(rays, _reference(K, c2w, H, W, c2w[0]), atol=2e-6)
    # Relative to a reference camera that is not on the path (a portrait seen from elsewhere).
    portrait = orbit_c2w(-15.0, 5.0, 55.0, 3.0)
    np.testing.assert_allclose(
        plucker_rays(K, c2w, H, W, reference_c2w=portrait),
        _reference(K, c2w, H, W, portrait),
        atol=2e-6,
    )


def test_unit_directions_and_orthogonal_moments():
    K, c2w = _cameras(np.linspace(0, 60, 9), np.linspace(0, -30, 9), np.linspace(60, 30, 9))
    rays = plucker_rays(K, c2w, H, W, reference_c2w=c2w[0])
    moments, directions = rays[:, :3], rays[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose((moments * directions).sum(axis=1), 0.0, atol=1e-6)
    assert np.abs(moments[1:]).max() > 0.1  # the camera moved, so the moments are not zero


def test_the_reference_camera_gives_identity_rays():
    # Whatever the world pose of the reference camera, a frame filmed by it is the identity.
    K, c2w = _cameras([37.0, 0.0], [-12.0, 0.0], [70.0, 70.0], [20.0, 0.0])
    rays = plucker_rays(K, c2w, H, W, reference_c2w=c2w[0])
    np.testing.assert_array_equal(rays[0, :3], 0.0)  # camera centre at the origin
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    expected = np.stack([(u - W / 2) / K[0, 0, 0], (v - H / 2) / K[0, 1, 1], np.ones_like(u)])
    expected /= np.linalg.norm(expected, axis=0)
    np.testing.assert_allclose(rays[0, 3:], expected, atol=1e-6)
    # Pixel centres are symmetric about the principal point: no half-pixel shift.
    np.testing.assert_allclose(
        rays[0, 3, :, : W // 2], -rays[0, 3, :, W // 2 :][:, ::-1], atol=1e-6
    )


def test_pure_dolly_changes_only_the_moments():
    K, c2w = _cameras(np.full(5, 20.0), np.full(5, 10.0), np.linspace(60, 30, 5))
    rays = plucker_rays(K, c2w, H, W, reference_c2w=c2w[0])
    np.testing.assert_allclose(
        rays[1:, 3:], np.broadcast_to(rays[0, 3:], rays[1:, 3:].shape), atol=1e-6
    )
    moment_change = np.abs(rays[1:, :3] - rays[0, :3]).max(axis=(1, 2, 3))
    assert (moment_change > 1e-3).all()
    # Moving half-way to the head: the camera centre is at 0.5 first-distances along +z.
    centre_ray = rays[-1, :, H // 2, W // 2]
    np.testing.assert_allclose(np.cross([0, 0, 0.5], centre_ray[3:]), centre_ray[:3], atol=1e-6)


def test_invariant_to_world_frame_and_scale():
    K, c2w = _cameras([0, 30, 50], [5, 15, -10], [60, 50, 40])
    rays = plucker_rays(K, c2w, H, W, reference_c2w=c2w[0])
    # Move the whole rig rigidly and scale the scene about the head centre: same maps.
    angle = np.radians(33)
    motion = np.eye(4)
    motion[:3, :3] = [
        [np.cos(angle), 0, np.sin(angle)],
        [0, 1, 0],
        [-np.sin(angle), 0, np.cos(angle)],
    ]
    moved = motion @ c2w
    moved[:, :3, 3] *= 2.5
    np.testing.assert_allclose(
        plucker_rays(K, moved, H, W, reference_c2w=moved[0]), rays, atol=1e-5
    )


def test_torch_in_torch_out():
    K, c2w = _cameras([0, 20], [0, 5], [60, 55])
    rays = plucker_rays(
        torch.from_numpy(K), torch.from_numpy(c2w), H, W, reference_c2w=torch.from_numpy(c2w[0])
    )
    assert torch.is_tensor(rays) and rays.dtype == torch.float32 and rays.shape == (2, 6, H, W)
    np.testing.assert_allclose(
        rays.numpy(), plucker_rays(K, c2w, H, W, reference_c2w=c2w[0]), atol=1e-7
    )


@pytest.mark.parametrize(
    ("K", "c2w", "message"),
    [
        (np.eye(3)[None], np.eye(4), "c2w: expected shape"),
        (np.eye(3)[None].repeat(2, 0), orbit_c2w([0], [0], [50]), "K: expected shape"),
        (np.eye(3)[None], np.eye(4)[None], "distance 0"),
        (np.eye(3)[None], orbit_c2w([0], [0], [50]), "reference camera: expected one"),
        (np.full((1, 3, 3), np.nan), orbit_c2w([0], [0], [50]), "finite"),
    ],
)
def test_bad_inputs_are_refused_clearly(K, c2w, message):
    reference = (
        np.eye(3) if message.startswith("reference") else np.asarray(c2w).reshape(-1, 4, 4)[0]
    )
    with pytest.raises(InputError, match=message):
        plucker_rays(K, c2w, H, W, reference_c2w=reference)
