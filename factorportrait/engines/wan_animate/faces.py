"""Wan-Animate's face video: a crop around the face of each driving frame, resized to 512x512.

Read in the Wan2.2 repository: ``wan/modules/animate/preprocess/process_pipepline.py`` crops
``frames[idx][y1:y2, x1:x2]`` with the box of ``get_face_bboxes(keypoints_face, scale=1.3)`` and
``cv2.resize``s it to 512x512 (default interpolation, aspect not kept), and
``wan/modules/animate/preprocess/utils.py`` defines that box (its later definition, the one in
effect): from the bounding box of the 68 face keypoints, a box of the same aspect and 1.3 times
the AREA; the extra width split evenly left and right, the extra height three quarters above (the
forehead, which 68-point landmarks leave out) and one quarter below; clipped to the image and
truncated to integer pixels. So the crop is not square in general; the resize makes it so.

Our landmarks are MediaPipe's 478, not the 68 of Wan's whole-body detector, so the box is taken
over the MediaPipe landmarks at the 68 points' places (``IBUG68_FROM_MEDIAPIPE``): jaw line,
brows, nose, eyes and lips, with the brows as the top (as in the 68-point set), not the hairline.
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_CROP_SIZE = 512
AREA_SCALE = 1.3
SHARE_ABOVE = 0.75  # of the extra height; the rest goes below the chin

# MediaPipe landmark at the place of each of the 68 iBUG points (jaw 17, brows 5+5, nose 4+5,
# eyes 6+6, lips 12+8). Only the box around them matters here.
IBUG68_FROM_MEDIAPIPE = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip


def face_crop_boxes(landmarks: np.ndarray, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """(F, >=468, 2+) landmarks in pixels -> (F, 4) integer boxes x1, y1, x2, y2 (x2, y2 excluded).

    image_size: (height, width) to clip the boxes to; None leaves them unclipped.
    """
    points = np.asarray(landmarks, float)[:, list(IBUG68_FROM_MEDIAPIPE), :2]
    low, high = points.min(axis=1), points.max(axis=1)
    size = np.maximum(high - low, 1e-6)  # (F, 2) width, height of the face
    # Same aspect, AREA_SCALE times the area: each side grows by sqrt(AREA_SCALE).
    extra = size * (np.sqrt(AREA_SCALE) - 1.0)
    x1 = low[:, 0] - extra[:, 0] / 2
    x2 = high[:, 0] + extra[:, 0] / 2
    y1 = low[:, 1] - extra[:, 1] * SHARE_ABOVE
    y2 = high[:, 1] + extra[:, 1] * (1.0 - SHARE_ABOVE)
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    if image_size is not None:
        height, width = image_size
        boxes = np.clip(boxes, 0, [width, height, width, height])
    return np.trunc(boxes).astype(int)


def crop_faces(frames: np.ndarray, boxes: np.ndarray, size: int = FACE_CROP_SIZE) -> np.ndarray:
    """(F, h, w, 3) frames cut to their (F, 4) boxes and resized to (F, size, size, 3)."""
    crops = []
    for frame, (x1, y1, x2, y2) in zip(frames, boxes, strict=True):
        face = frame[y1:y2, x1:x2]
        if face.size == 0:  # a face entirely off the frame: nothing to show
            face = np.zeros((1, 1, 3), np.uint8)
        crops.append(cv2.resize(face, (size, size)))
    return np.stack(crops)


def face_video(cond, size: int = FACE_CROP_SIZE) -> np.ndarray:
    """(F, size, size, 3) uint8 face crops for Wan-Animate's face encoder.

    From the driving clip where the mode drives the head; otherwise (camera-only: no driving
    clip) the portrait's own face, repeated: the expression stays the photo's.
    """
    if cond.driving_frames is not None and cond.driving_landmarks is not None:
        frames, landmarks = cond.driving_frames, cond.driving_landmarks
    else:
        frames, landmarks = cond.reference[None], cond.source_landmarks[None]
    boxes = face_crop_boxes(landmarks, frames.shape[1:3])
    crops = crop_faces(frames, boxes, size)
    if len(crops) == 1:
        crops = np.repeat(crops, len(cond.c2w), axis=0)
    return crops
