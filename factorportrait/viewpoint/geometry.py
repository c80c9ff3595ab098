"""Pinhole cameras around the head.

Conventions (ARCHITECTURE.md: Conventions):
- Cameras are OpenCV: x right, y down, z forward (the viewing direction).
- ``c2w`` (4x4) maps camera coordinates to world coordinates.
- World = the portrait's head frame, in centimetres: origin at the head centre, x to the right
  of the frontal image, y up, z out of the face (towards the frontal camera). These are the axes
  of MediaPipe's canonical face model, so the tracked mesh lives in this frame unchanged.

A view around the head is (azimuth, elevation, distance, roll) plus a vertical field of view:
- azimuth > 0 moves the camera to the right of the frontal view (towards world +x),
- elevation > 0 moves it above eye level (towards world +y),
- roll > 0 turns the camera clockwise about its viewing axis (the picture turns anticlockwise),
- the camera always looks at the head centre.

The rotation is built from the angles directly (yaw, then pitch, then roll) rather than from a
look-at with a world "up" vector, so it is continuous everywhere, poles included: no flips.
"""

from __future__ import annotations

import numpy as np

# Orientation of the frontal camera (azimuth = elevation = roll = 0) in world axes: it sits on
# +z, looks down -z, its x is world +x and its y (down) is world -y.
_FRONTAL_ROTATION = np.diag([1.0, -1.0, -1.0])
# OpenGL camera axes (x right, y up, z back) -> OpenCV's (y down, z forward): flip y and z.
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics_from_fov(fov_deg, height: int, width: int) -> np.ndarray:
    """Pinhole K in pixels from the vertical field of view (square pixels).

    Pixel (i, j) covers [i, i+1) x [j, j+1), so its centre is (i+0.5, j+0.5) and the
    principal point is the image centre (width/2, height/2).
    Accepts a scalar (returns (3,3)) or an array of F values (returns (F,3,3)).
    """
    fov = np.asarray(fov_deg, dtype=np.float64)
    focal = (height / 2.0) / np.tan(np.deg2rad(fov) / 2.0)
    K = np.zeros(fov.shape + (3, 3))
    K[..., 0, 0] = focal
    K[..., 1, 1] = focal
    K[..., 0, 2] = width / 2.0
    K[..., 1, 2] = height / 2.0
    K[..., 2, 2] = 1.0
    return K


def _rotation_x(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    R[..., 0, 0] = 1.0
    R[..., 1, 1], R[..., 1, 2] = c, -s
    R[..., 2, 1], R[..., 2, 2] = s, c
    return R


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 2] = c, s
    R[..., 1, 1] = 1.0
    R[..., 2, 0], R[..., 2, 2] = -s, c
    return R


def _rotation_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros(angle.shape + (3, 3))
    R[..., 0, 0], R[..., 0, 1] = c, -s
    R[..., 1, 0], R[..., 1, 1] = s, c
    R[..., 2, 2] = 1.0
    return R


def orbit_c2w(azimuth_deg, elevation_deg, distance, roll_deg=0.0) -> np.ndarray:
    """Camera-to-world matrices for cameras on a sphere around the head centre, looking at it.

    All arguments broadcast; the result has shape broadcast_shape + (4, 4).
    """
    az, el, dist, roll = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (azimuth_deg, elevation_deg, distance, roll_deg))
    )
    # Yaw about world y, then pitch up about world x: this carries the frontal camera position
    # (0, 0, d) to (d cos(el) sin(az), d sin(el), d cos(el) cos(az)).
    orbit = _rotation_y(np.deg2rad(az)) @ _rotation_x(-np.deg2rad(el))
    # Roll is about the camera's own z axis, i.e. applied on the camera side.
    rotation = orbit @ _FRONTAL_ROTATION @ _rotation_z(np.deg2rad(roll))
    c2w = np.zeros(az.shape + (4, 4))
    c2w[..., :3, :3] = rotation
    c2w[..., :3, 3] = orbit[..., :, 2] * dist[..., None]
    c2w[..., 3, 3] = 1.0
    return c2w


def invert_rigid(c2w: np.ndarray) -> np.ndarray:
    """Inverse of rigid 4x4 transforms (rotation transposed), batched."""
    R = c2w[..., :3, :3]
    t = c2w[..., :3, 3]
    inv = np.zeros_like(c2w)
    inv[..., :3, :3] = np.swapaxes(R, -1, -2)
    inv[..., :3, 3] = -np.einsum("...ji,...j->...i", R, t)
    inv[..., 3, 3] = 1.0
    return inv
