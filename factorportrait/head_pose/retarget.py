"""Head pose: the head placed for our camera model, and driving poses retargeted onto the portrait.

World = the portrait's head frame (ARCHITECTURE.md: Conventions), so the portrait's head pose is the
identity and its camera is what the photo shows. Driving motion is measured in the driving
camera's frame, relative to the clip's first frame (or absolute), and applied to the portrait
in its own camera's frame: "turn left by 20 degrees" means the same on screen for both.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..viewpoint.geometry import invert_rigid
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


class FaceTooClose(InputError):
    """No camera of the given K can place the face: its head would sit 5 cm or nearer."""


def place_heads(
    rotations: np.ndarray,
    landmarks: np.ndarray,
    face_vertices: np.ndarray,
    K: np.ndarray,
    *,
    name: str = "clip",
) -> np.ndarray:
    """(F,4,4) head -> camera for our camera model: the tracked rotations (orthogonalised) and
    translations solved so the template's face reprojects onto the landmarks (F,>=468,2+) in
    the framed pixels of camera K (3,3). MediaPipe's own translations assume its own camera
    (about 63 degrees wide) and are never used: depth would be off by ~2.3x at our 30 degrees."""
    count = len(rotations)
    poses = np.tile(np.eye(4), (count, 1, 1))
    poses[:, :3, :3] = nearest_rotation(rotations)
    poses[:, :3, 3] = solve_head_translations(
        poses[:, :3, :3], face_vertices, landmarks, np.broadcast_to(K, (count, 3, 3))
    )
    if (poses[:, 2, 3] <= 5.0).any():
        raise FaceTooClose(f"{name}: the face is too close or too large to place a camera")
    return poses


def retarget_head_poses(
    head_to_camera: np.ndarray,
    portrait_c2w: np.ndarray,
    K: np.ndarray,
    *,
    relative: bool = True,
    strength: float = 1.0,
) -> np.ndarray:
    """Head-to-world poses (F,4,4) of the portrait driven by the driving heads.

    head_to_camera (F,4,4): the driving heads placed for our camera model (``place_heads``,
    the clip framed like a portrait), K (3,3) that camera, portrait_c2w (4,4) the portrait's.

    relative: the motion since the first frame is applied to the portrait as its camera sees
    it: the rotation about the camera's axes, a move towards the camera as the same change of
    the face's scale (depth ratio), a move across the picture as the same shift in the framed
    pixels (framing makes pixels face-relative). Otherwise (absolute) the portrait takes the
    driving head's pose relative to the camera.
    strength scales the motion (0 = still, 1 = as driven).
    """
    portrait = invert_rigid(portrait_c2w)  # head -> portrait camera
    portrait_rotation, portrait_t = portrait[:3, :3], portrait[:3, 3]
    driving = Rotation.from_matrix(head_to_camera[:, :3, :3])
    t = head_to_camera[:, :3, 3]
    if relative:
        delta = driving * driving[0].inv()
        depth = portrait_t[2] * (t[:, 2] / t[0, 2]) ** strength
        shift = strength * (_project(K, t) - _project(K, t[0]))
        pixels = _project(K, portrait_t) + shift
        translation = depth[:, None] * (np.c_[pixels, np.ones(len(t))] @ np.linalg.inv(K).T)
    else:
        delta = driving * Rotation.from_matrix(portrait_rotation).inv()
        translation = portrait_t + strength * (t - portrait_t)
    delta = Rotation.from_rotvec(delta.as_rotvec() * strength)
    poses = np.tile(np.eye(4), (len(t), 1, 1))
    poses[:, :3, :3] = delta.as_matrix() @ portrait_rotation
    poses[:, :3, 3] = translation
    return portrait_c2w @ poses


def _project(K: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 3) camera-space points -> (..., 2) pixels."""
    pixels = points @ K.T
    return pixels[..., :2] / pixels[..., 2:]


def head_yaw_pitch_roll(rotations: np.ndarray) -> np.ndarray:
    """(F,3) degrees of head->camera rotations, for reports: yaw about the camera's vertical."""
    # Relative to a frontal face (head frame = camera frame flipped in y and z).
    frontal = np.diag([1.0, -1.0, -1.0])
    return Rotation.from_matrix(rotations @ frontal).as_euler("YXZ", degrees=True)


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The closest rotation(s) to (3, 3) or (N, 3, 3) matrices (scipy orthogonalises them)."""
    return Rotation.from_matrix(matrix).as_matrix()
