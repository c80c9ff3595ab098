"""Head pose: the portrait's own camera, camera paths for the modes, and pose retargeting.

World = the portrait's head frame (README: Cameras and trajectories), so the portrait's head pose is the
identity and its camera is what the photo shows. Driving motion is measured in the driving
camera's frame, relative to the clip's first frame (or absolute), and applied to the portrait
in its own camera's frame: "turn left by 20 degrees" means the same on screen for both.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .camera import CameraView, Trajectory, intrinsics_from_fov, invert_rigid, orbit_c2w
from .config import CAMERA
from .errors import InputError
from .face_model import NUM_MESH_VERTICES
from .tracking import FaceObservation


def estimate_portrait_camera(
    face: FaceObservation,
    face_vertices: np.ndarray,
    height: int,
    width: int,
    fov_deg: float = CAMERA.fov_deg,
) -> tuple[np.ndarray, np.ndarray]:
    """K (3,3) and c2w (4,4) of the camera that took the (cropped) portrait.

    The focal length comes from a stated default field of view; the rotation is MediaPipe's;
    the translation is solved in closed form so the template's landmarks reproject onto the
    tracked ones (``solve_head_translations``).
    """
    K = intrinsics_from_fov(fov_deg, height, width)
    rotation = nearest_rotation(face.head_to_camera[:3, :3])
    translation = solve_head_translations(
        rotation[None], face_vertices, face.landmarks[None], K[None]
    )[0]
    if translation[2] <= 5.0:
        raise InputError("portrait: the face is too close or too large to place a camera")
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = rotation, translation
    return K, invert_rigid(w2c)


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
