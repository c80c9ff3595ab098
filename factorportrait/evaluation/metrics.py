"""Metrics on tracked videos. All pure numpy: poses in, errors out.

Conventions: rotations and translations are head -> camera (OpenCV), the generated heads
placed in our camera model (``harness.generated_heads``: ARCHITECTURE.md, Our camera model);
``c2w`` and ``head_pose`` are the requested cameras and head poses in the world (head) frame,
as a Conditioning holds them. Pose errors are measured on motion relative to the first frame,
so a constant offset between the generated head and the requested one (its size, where it
sits) cancels.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from ..head_pose.template import STABLE_LANDMARKS
from ..procrustes import umeyama


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle of a_f^T b_f for stacks of rotations (F,3,3) -> (F,) degrees."""
    relative = np.swapaxes(a, -1, -2) @ b
    # The rotation vector's length: accurate near zero, where arccos of the trace is not.
    return np.degrees(Rotation.from_matrix(relative.reshape(-1, 3, 3)).magnitude()).reshape(
        relative.shape[:-2]
    )


def relative_to_first(rotations: np.ndarray) -> np.ndarray:
    """R_f R_0^T: each frame's rotation since the first, in the camera frame."""
    return rotations @ np.swapaxes(rotations[:1], -1, -2)


def expression_error(generated: np.ndarray, requested: np.ndarray) -> np.ndarray:
    """Mean absolute blendshape difference per frame (F,52) x (F,52) -> (F,), in [0, 1]."""
    return np.abs(generated - requested).mean(axis=-1)


def requested_head_in_camera(c2w: np.ndarray, head_pose: np.ndarray) -> np.ndarray:
    """Requested head -> camera poses (F,4,4)."""
    return np.linalg.inv(c2w) @ head_pose


def head_pose_error(
    requested: np.ndarray, generated_rotations: np.ndarray, generated_translations: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-frame rotation error (degrees) and translation error (cm) of the generated head's
    motion against the requested one, both seen from the camera."""
    rotation = rotation_angle_deg(
        relative_to_first(requested[:, :3, :3]), relative_to_first(generated_rotations)
    )
    requested_shift = requested[:, :3, 3] - requested[:1, :3, 3]
    generated_shift = generated_translations - generated_translations[:1]
    return {
        "rotation_deg": rotation,
        "translation_cm": np.linalg.norm(requested_shift - generated_shift, axis=-1),
    }


def implied_cameras(
    head_pose: np.ndarray,
    generated_rotations: np.ndarray,
    generated_translations: np.ndarray,
    first_camera: np.ndarray | None = None,
) -> np.ndarray:
    """Cameras (F,4,4) implied by the generated face: where a camera must be to see the head,
    placed as requested in the world, the way the tracker sees it.

    first_camera (4,4): the requested first camera. The tracker's head axes differ from the
    requested head's by a constant rotation (MediaPipe's face frame against the template's as
    the core's reference camera sees it); given the first camera, that offset is taken out at
    the first frame, else it would turn the head's own translation into camera motion."""
    rotations = np.asarray(generated_rotations, dtype=np.float64)
    if first_camera is not None:
        requested_first = (np.linalg.inv(first_camera) @ head_pose[0])[:3, :3]
        rotations = rotations @ (rotations[0].T @ requested_first)
    head_to_camera = np.tile(np.eye(4), (len(head_pose), 1, 1))
    head_to_camera[:, :3, :3] = rotations
    head_to_camera[:, :3, 3] = generated_translations
    return head_pose @ np.linalg.inv(head_to_camera)


def camera_error(requested_c2w: np.ndarray, implied_c2w: np.ndarray) -> dict[str, np.ndarray]:
    """Relative camera motion (each frame against the first) requested vs implied: rotation
    error in degrees and translation error in units of the first camera's distance."""

    def relative(c2w):
        return np.linalg.inv(c2w[:1]) @ c2w

    req, imp = relative(requested_c2w), relative(implied_c2w)
    scale_req = np.linalg.norm(requested_c2w[0, :3, 3])
    scale_imp = np.linalg.norm(implied_c2w[0, :3, 3])
    translation = np.linalg.norm(req[:, :3, 3] / scale_req - imp[:, :3, 3] / scale_imp, axis=-1)
    return {
        "rotation_deg": rotation_angle_deg(req[:, :3, :3], imp[:, :3, :3]),
        "translation_rel": translation,
    }


def identity_drift(landmarks: np.ndarray) -> np.ndarray:
    """Per frame: how far the face's shape has moved from the first frame's once position,
    size and rotation are removed (similarity on expression-stable landmarks), as a fraction
    of the distance between the eyes. 0 means the same face shape throughout."""
    points = landmarks[:, STABLE_LANDMARKS, :]
    reference = points[0]
    eyes = np.linalg.norm(landmarks[0, 33, :2] - landmarks[0, 263, :2])
    drift = np.zeros(len(points))
    for i, frame in enumerate(points):
        scale, rotation, shift = umeyama(frame, reference)
        aligned = scale * frame @ rotation.T + shift
        drift[i] = np.linalg.norm(aligned - reference, axis=-1).mean() / max(eyes, 1e-6)
    return drift


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB of uint8 videos (F,H,W,3); identical frames give inf."""
    error = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / error)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame SSIM (scikit-image, colour, 8-bit range)."""
    from skimage.metrics import structural_similarity

    return np.array(
        [
            structural_similarity(x, y, channel_axis=-1, data_range=255)
            for x, y in zip(a, b, strict=True)
        ]
    )


# -- view consistency ---------------------------------------------------------------------------


def lift_landmarks(landmarks: np.ndarray, K: np.ndarray, head_depth_cm: np.ndarray) -> np.ndarray:
    """Tracked landmarks (F,N,3) in pixels -> 3D points (F,N,3) in the camera frame, in cm.

    MediaPipe's z is a depth relative to the head centre in the units of x (pixels); a landmark
    lies at depth d + z d / fx when the head centre is at depth ``head_depth_cm`` d (F,), and
    at (u - cx) depth / fx, (v - cy) depth / fy across. K: (F,3,3) or (3,3)."""
    landmarks = np.asarray(landmarks, np.float64)
    K = np.broadcast_to(np.asarray(K, np.float64), (len(landmarks), 3, 3))
    depth_cm = np.asarray(head_depth_cm, np.float64)[:, None]
    fx, fy = K[:, 0, 0][:, None], K[:, 1, 1][:, None]
    cx, cy = K[:, 0, 2][:, None], K[:, 1, 2][:, None]
    depth = depth_cm + landmarks[..., 2] * depth_cm / fx
    x = (landmarks[..., 0] - cx) / fx * depth
    y = (landmarks[..., 1] - cy) / fy * depth
    return np.stack([x, y, depth], axis=-1)


def view_consistency(
    points_in_camera: np.ndarray, c2w: np.ndarray, head_pose: np.ndarray
) -> np.ndarray:
    """Per frame (F,): how far, in cm, the face's 3D points (F,N,3, each frame's own camera
    frame) sit from where the first frame put them, once each frame is carried into the head's
    frame by the REQUESTED camera (c2w, F,4,4) and head pose (F,4,4). A face that keeps one rigid
    3D shape while the camera moves as asked scores 0; a face that changes shape, or that moves
    in the picture unlike the requested camera would move it, scores the displacement."""
    points = np.asarray(points_in_camera, np.float64)
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    to_head = np.linalg.inv(head_pose) @ c2w  # camera -> head frame, per frame
    in_head = np.einsum("fij,fnj->fni", to_head, homogeneous)[..., :3]
    return np.linalg.norm(in_head - in_head[:1], axis=-1).mean(axis=-1)


def rigid_shape_residual(points: np.ndarray) -> np.ndarray:
    """Per frame (F,): mean distance (cm) between each frame's 3D points (F,N,3) and the first
    frame's after the best rotation and translation (no scale): 0 for one rigid shape, whatever
    the cameras did; what is left is the shape's own change."""
    points = np.asarray(points, np.float64)
    reference = points[0]
    residual = np.zeros(len(points))
    for index, frame in enumerate(points):
        rotation, shift = _rigid_fit(frame, reference)
        residual[index] = np.linalg.norm(frame @ rotation.T + shift - reference, axis=-1).mean()
    return residual


def _rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) minimising sum |R source_i + t - target_i|^2 (Kabsch), R a proper rotation."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - target_mean).T @ (source - source_mean)
    u, _, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ sign @ vt
    return rotation, target_mean - source_mean @ rotation.T


def camera_moves(c2w: np.ndarray, *, degrees: float = 0.5, fraction: float = 0.005) -> bool:
    """Whether a requested camera path (F,4,4) moves: any frame turned by more than ``degrees``
    or moved by more than ``fraction`` of the first camera's distance from the head."""
    relative = np.linalg.inv(c2w[:1]) @ c2w
    turned = rotation_angle_deg(np.tile(np.eye(3), (len(c2w), 1, 1)), relative[:, :3, :3])
    distance = max(float(np.linalg.norm(c2w[0, :3, 3])), 1e-9)
    moved = np.linalg.norm(relative[:, :3, 3], axis=-1) / distance
    return bool((turned > degrees).any() or (moved > fraction).any())


# -- identity -----------------------------------------------------------------------------------


def cosine_similarity(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine of each embedding (F,D) with the reference's (D,): CSIM, in [-1, 1]."""
    embeddings = np.asarray(embeddings, np.float64)
    reference = np.asarray(reference, np.float64)
    norms = np.linalg.norm(embeddings, axis=-1) * np.linalg.norm(reference)
    return embeddings @ reference / np.maximum(norms, 1e-12)


def embedding_distance(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Euclidean distance of each embedding (F,D) from the reference's (D,): how dlib compares
    its face descriptors (one person below 0.6)."""
    embeddings = np.asarray(embeddings, np.float64)
    reference = np.asarray(reference, np.float64)
    return np.linalg.norm(embeddings - reference, axis=-1)


# -- distributions (FVD) ------------------------------------------------------------------------


def frechet_distance(
    mean_a: np.ndarray, covariance_a: np.ndarray, mean_b: np.ndarray, covariance_b: np.ndarray
) -> float:
    """Fréchet distance between two Gaussians: |m_a - m_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2)
    (FID's and FVD's formula)."""
    from scipy.linalg import sqrtm

    root = sqrtm(np.asarray(covariance_a, np.float64) @ np.asarray(covariance_b, np.float64))
    root = np.real(root)  # numerical noise can leave tiny imaginary parts
    difference = np.asarray(mean_a, np.float64) - np.asarray(mean_b, np.float64)
    trace = np.trace(covariance_a) + np.trace(covariance_b) - 2 * np.trace(root)
    return float(difference @ difference + max(trace, 0.0))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D,D) of features (N,D) (N >= 2)."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)
