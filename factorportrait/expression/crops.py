"""Expression features per frame: MediaPipe's 52 blendshapes (a CPU code for previews and
metrics) and aligned face crops, the input of the model's image encoder.

Alignment is a similarity transform (rotation, uniform scale, shift) that puts the two eye
centres and the mouth centre at fixed places, like FFHQ-style face alignment: the encoder sees
the same framing whatever the head's position and roll.
"""

from __future__ import annotations

import cv2  # OpenCV arrives with mediapipe (its drawing utilities need it)
import numpy as np

from ..procrustes import umeyama

CROP_SIZE = 224
# Eye centres from the eye corners (not the irises, which move with gaze), mouth from its
# corners: landmarks that expressions move little, so the crop does not swim.
_RIGHT_EYE = (33, 133)  # the subject's right eye: the left of the image
_LEFT_EYE = (362, 263)
_MOUTH = (61, 291)
# Where they go in a unit crop (x right, y down).
_TEMPLATE = np.array([[0.355, 0.42], [0.645, 0.42], [0.5, 0.74]])


def alignment_matrix(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """2x3 affine taking image pixels to the aligned crop's pixels."""
    points = np.stack(
        [
            landmarks[list(_RIGHT_EYE), :2].mean(0),
            landmarks[list(_LEFT_EYE), :2].mean(0),
            landmarks[list(_MOUTH), :2].mean(0),
        ]
    )
    scale, rotation, shift = umeyama(points, _TEMPLATE * size)
    return np.concatenate([scale * rotation, shift[:, None]], axis=1)


def aligned_crops(frames: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """frames (F,H,W,3) uint8 + landmarks (F,478,3) pixels -> crops (F,size,size,3) uint8."""
    crops = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, points) in enumerate(zip(frames, landmarks, strict=True)):
        crops[i] = cv2.warpAffine(
            frame,
            alignment_matrix(points, size),
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return crops


def landmarks_in_aligned_crops(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(F, 478, 3) image landmarks -> (F, 478, 2) in their aligned crops, scaled to [0, 1]: the
    C3 codes before issue 27, where a head turn moved them ten times more than an expression
    (kept for the test that shows it; the codes are now ``landmarks.head_frame_landmarks``)."""
    out = np.empty(landmarks.shape[:2] + (2,))
    for i, points in enumerate(landmarks):
        matrix = alignment_matrix(points, size)
        out[i] = (points[:, :2] @ matrix[:, :2].T + matrix[:, 2]) / size
    return out
