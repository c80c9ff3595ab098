"""Portrait framing: the square around a face that becomes the reference image (and the crop a
driving or target clip is seen through), and the camera that took the framed portrait.

Every framed image is treated as taken by our default camera (ARCHITECTURE.md:
Conventions): a stated field of view over the crop, the head placed by solving its
translation so the template's landmarks reproject onto the tracked ones.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..config import CAMERA, LIMITS
from ..errors import InputError
from ..head_pose.retarget import place_heads
from ..tracking import FaceObservation, FaceTracker
from ..viewpoint import intrinsics_from_fov, invert_rigid


def estimate_portrait_camera(
    face: FaceObservation,
    face_vertices: np.ndarray,
    height: int,
    width: int,
    fov_deg: float = CAMERA.fov_deg,
) -> tuple[np.ndarray, np.ndarray]:
    """K (3,3) and c2w (4,4) of the camera that took the (cropped) portrait.

    The focal length comes from a stated default field of view; the head is placed for that
    camera the same way every driving and target frame is (``place_heads``), so the portrait
    camera is the inverse of the reference head's pose.
    """
    K = intrinsics_from_fov(fov_deg, height, width)
    head_to_camera = place_heads(
        face.head_to_camera[None, :3, :3], face.landmarks[None], face_vertices, K, name="portrait"
    )[0]
    return K, invert_rigid(head_to_camera)


# The square around the face that becomes the reference frame: face box x this factor.
PORTRAIT_CROP_SCALE = 2.0


def track_portrait(tracker: FaceTracker, image: np.ndarray, report) -> FaceObservation:
    """The portrait's face (the largest), tracked; ``report`` (a ConditioningReport) notes
    how many faces were found."""
    # Very large photos are tracked on a downscaled copy (the detector works at low resolution).
    scale = min(1.0, LIMITS.max_image_side_tracked / max(image.shape[:2]))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image,
            (round(image.shape[1] * scale), round(image.shape[0] * scale)),
            interpolation=cv2.INTER_AREA,
        )
    )
    face = tracker.track_image(small)
    if face is None:
        raise InputError("portrait: no face found (use a photo with one clearly visible face)")
    if scale != 1.0:
        face = face.scaled(1.0 / scale, (0.0, 0.0))
    report.portrait_faces_found = face.faces_found
    if face.faces_found > 1:
        report.warnings.append(f"{face.faces_found} faces in the portrait: using the largest")
    return face


def frame_portrait(
    image: np.ndarray,
    face: FaceObservation,
    height: int,
    width: int,
    crop_scale: float = PORTRAIT_CROP_SCALE,
) -> tuple[np.ndarray, FaceObservation, np.ndarray]:
    """Crop the portrait around the face to the output's aspect and size (padding with the
    edge colour where the crop leaves the photo); the face's landmarks follow. Also returns
    the 2x3 image -> reference matrix."""
    matrix = framing_matrix(face.box, height, width, crop_scale)
    reference = cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    scale = matrix[0, 0]
    return reference, face.scaled(scale, (-matrix[0, 2] / scale, -matrix[1, 2] / scale)), matrix


def framing_matrix(
    box: np.ndarray, height: int, width: int, crop_scale: float = PORTRAIT_CROP_SCALE
) -> np.ndarray:
    """The 2x3 image -> output matrix that frames a face box (x0, y0, x1, y1) like a portrait:
    a square of ``crop_scale`` times the face's size (twice by default), centred a little above
    it (room for the hair)."""
    x0, y0, x1, y1 = box
    crop_h = max(x1 - x0, y1 - y0) * crop_scale
    crop_w = crop_h * width / height
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2 - 0.1 * (y1 - y0)
    left, top = centre_x - crop_w / 2, centre_y - crop_h / 2
    scale = width / crop_w
    return np.array([[scale, 0.0, -left * scale], [0.0, scale, -top * scale]])


def clip_framing(
    first_landmarks: np.ndarray, height: int, width: int, crop_scale: float = PORTRAIT_CROP_SCALE
) -> np.ndarray:
    """The 2x3 clip -> framed matrix of a driving or target clip: framed like a portrait around
    its first frame's face, one crop for the whole clip (a crop that followed the face would
    be a camera motion the rays never saw, and would hide the head's own motion)."""
    box = np.array(
        [
            first_landmarks[:, 0].min(),
            first_landmarks[:, 1].min(),
            first_landmarks[:, 0].max(),
            first_landmarks[:, 1].max(),
        ]
    )
    return framing_matrix(box, height, width, crop_scale)


def frame_images(frames: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F, h, w, 3) frames cut through one 2x3 framing matrix: (F, height, width, 3)."""
    return np.stack(
        [
            cv2.warpAffine(
                frame,
                matrix,
                (width, height),
                flags=cv2.INTER_AREA,
                borderMode=cv2.BORDER_REPLICATE,
            )
            for frame in frames
        ]
    )
