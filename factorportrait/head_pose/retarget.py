"""Head pose: the head placed for our camera model, and driving poses retargeted onto the portrait.

World = the portrait's head frame (README: Cameras and trajectories), so the portrait's head pose is the
identity and its camera is what the photo shows. Driving motion is measured in the driving
camera's frame, relative to the clip's first frame (or absolute), and applied to the portrait
in its own camera's frame: "turn left by 20 degrees" means the same on screen for both.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .canonical import NUM_MESH_VERTICES


def solve_head_translations(
    rotations: np.ndarray, face_vertices: np.ndarray, landmarks: np.ndarray, K: np.ndarray
) -> np.ndarray:
    """Head -> camera translations (F,3) that reproject the template's face onto the tracked
    landmarks, for known rotations (F,3,3), landmarks (F,>=468,2+) in pixels and K (F,3,3).

    For a fixed rotation the pinhole equations are linear in t: per frame a 3x3 least-squares
    problem, solved for all frames at once through its normal equations.
    """
    rotated = np.einsum("fij,vj->fvi", rotations, face_vertices[:NUM_MESH_VERTICES])
    u = landmarks[:, :NUM_MESH_VERTICES, 0]
    v = landmarks[:, :NUM_MESH_VERTICES, 1]
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
    ones, zeros = np.ones_like(u), np.zeros_like(u)
    # fx (X + tx) + (cx - u)(Z + tz) = 0 and fy (Y + ty) + (cy - v)(Z + tz) = 0
    A = np.concatenate(
        [
            np.stack([fx * ones, zeros, cx - u], -1),
            np.stack([zeros, fy * ones, cy - v], -1),
        ],
        axis=1,
    )
    b = -np.concatenate(
        [
            fx * rotated[..., 0] + (cx - u) * rotated[..., 2],
            fy * rotated[..., 1] + (cy - v) * rotated[..., 2],
        ],
        axis=1,
    )
    normal = np.einsum("fni,fnj->fij", A, A)
    return np.linalg.solve(normal, np.einsum("fni,fn->fi", A, b)[..., None])[..., 0]


def retarget_head_poses(
    rotations: np.ndarray,
    translations: np.ndarray,
    portrait_c2w: np.ndarray,
    *,
    relative: bool = True,
    strength: float = 1.0,
) -> np.ndarray:
    """Head-to-world poses (F,4,4) of the portrait driven by tracked driving poses.

    rotations (F,3,3), translations (F,3): driving head -> driving camera (OpenCV, cm).
    relative: apply the motion since the first frame to the portrait's own pose; otherwise
    the portrait takes the driving head's orientation towards the camera.
    strength scales the motion (0 = still, 1 = as driven).
    """
    portrait_rotation = portrait_c2w[:3, :3].T  # world (= portrait head) -> portrait camera
    driving = Rotation.from_matrix(rotations)
    if relative:
        delta = driving * driving[0].inv()
        shift = translations - translations[0]
    else:
        delta = driving * Rotation.from_matrix(portrait_rotation).inv()
        shift = np.zeros_like(translations)
    delta = Rotation.from_rotvec(delta.as_rotvec() * strength)
    # A rotation seen in the camera frame, expressed in the world frame: R_c^T dR R_c.
    head_rotation = portrait_rotation.T @ delta.as_matrix() @ portrait_rotation
    poses = np.tile(np.eye(4), (len(rotations), 1, 1))
    poses[:, :3, :3] = head_rotation
    poses[:, :3, 3] = (shift * strength) @ portrait_rotation  # camera -> world directions
    return poses


def head_yaw_pitch_roll(rotations: np.ndarray) -> np.ndarray:
    """(F,3) degrees of head->camera rotations, for reports: yaw about the camera's vertical."""
    # Relative to a frontal face (head frame = camera frame flipped in y and z).
    frontal = np.diag([1.0, -1.0, -1.0])
    return Rotation.from_matrix(rotations @ frontal).as_euler("YXZ", degrees=True)


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The closest rotation(s) to (3, 3) or (N, 3, 3) matrices (scipy orthogonalises them)."""
    return Rotation.from_matrix(matrix).as_matrix()
