"""Camera paths flown from the portrait's camera: a trajectory sampled into K and c2w per
output frame, and the (azimuth, elevation, distance, roll) view of a camera."""

from __future__ import annotations

import numpy as np

from ..config import CAMERA
from .geometry import invert_rigid, orbit_c2w
from .trajectory import CameraView, Trajectory


def view_of_camera(c2w: np.ndarray, fov_deg: float = CAMERA.fov_deg) -> CameraView:
    """The (azimuth, elevation, distance, roll) view closest to a camera around the head."""
    position = c2w[:3, 3]
    distance = float(np.linalg.norm(position))
    azimuth = float(np.degrees(np.arctan2(position[0], position[2])))
    elevation = float(np.degrees(np.arcsin(np.clip(position[1] / distance, -1, 1))))
    unrolled = orbit_c2w(azimuth, elevation, distance)[:3, :3]
    relative = unrolled.T @ c2w[:3, :3]  # ~ a rotation about the viewing axis
    roll = float(np.degrees(np.arctan2(relative[1, 0], relative[0, 0])))
    return CameraView(azimuth, elevation, distance, roll, fov_deg)


def camera_path(
    trajectory: Trajectory,
    frames: int,
    portrait_c2w: np.ndarray,
    height: int,
    width: int,
    fov_deg: float = CAMERA.fov_deg,
) -> tuple[np.ndarray, np.ndarray]:
    """K (F,3,3) and c2w (F,4,4) for a trajectory flown from the portrait's camera.

    Portrait-anchored trajectories are applied as motions relative to their own first view, so
    frame 0 is exactly the portrait's camera (even when the face is off-centre in the photo).
    """
    base = view_of_camera(portrait_c2w, fov_deg)
    path = trajectory.sample(frames, base)
    K = path.intrinsics(height, width)
    if trajectory.anchor == "head":
        return K, path.c2w()
    start = orbit_c2w(base.azimuth, base.elevation, base.distance, base.roll)
    motion = path.c2w() @ invert_rigid(start)
    return K, motion @ portrait_c2w
