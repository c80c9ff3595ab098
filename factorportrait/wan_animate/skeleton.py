"""Wan-Animate's pose video drawn from our posed template head and cameras.

Wan-Animate is conditioned on a skeleton video drawn by its preprocessing
(``wan/modules/animate/preprocess/process_pipepline.py`` of the Wan2.2 repository calls
``draw_aapose_by_meta_new``; the drawing code, ``human_visualization.py``, was read in a public
fork, starsFriday/ComfyUI-MultiPoseToolkit ``toolkit/pose_utils/human_visualization.py``, which
carries the Wan team's copyright header). What we follow from it, in our own code:

- 20 body keypoints in OpenPose order: nose, neck, right shoulder/elbow/wrist, left
  shoulder/elbow/wrist, right hip/knee/ankle, left hip/knee/ankle, right eye, left eye, right ear,
  left ear, left toe, right toe ("right" = the person's right). The neck is the midpoint of the
  two shoulders in the image (``split_pose2d_kps_to_aa`` averages the detector's 2D shoulders).
- 19 limbs, each a filled ellipse between its two keypoints, half-thickness ``stickwidth``, in
  60% of its limb colour; then each keypoint a filled disc of radius ``stickwidth`` in its own
  colour, over the limbs. ``stickwidth = max(int(min(H, W) / 200) - 1, 1)``.
- Colours are RGB (the canvas is ``np.zeros_like`` of an RGB frame); keypoint i and limb i both
  take the i-th colour of the 20-entry OpenPose palette below.
- A keypoint that was not detected (score under the threshold) is not drawn, nor its limbs: we
  leave out the keypoints our template does not have (elbows, wrists, hips, legs, toes) the same
  way, as NaN.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..head_pose import posing

# OpenPose body order as Wan-Animate draws it (indices into the keypoint array).
NOSE, NECK, RIGHT_SHOULDER, LEFT_SHOULDER = 0, 1, 2, 5
RIGHT_EYE, LEFT_EYE, RIGHT_EAR, LEFT_EAR = 14, 15, 16, 17
NUM_KEYPOINTS = 20

# Limbs as (keypoint, keypoint) pairs, in the order that picks their colours.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (13, 18), (10, 19),
)  # fmt: skip
COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
    (200, 200, 0), (100, 100, 0),
)  # fmt: skip
LIMB_SHADE = 0.6

# Face keypoints from template face vertices (MediaPipe canonical landmark order). The head frame
# has x towards the image's right for a frontal face, so the person's right is x < 0.
# Nose: vertex 4, the canonical mesh's most forward point (the tip, as OpenPose marks it).
# Eyes: the middle of each eye's two corners (33/133 right, 362/263 left); OpenPose marks the
# eye's centre and the irises (468+) are not template vertices.
# Ears: 234/454, the face outline's points farthest back at ear level (the template has no ear).
FACE_VERTICES = {
    NOSE: (4,),
    RIGHT_EYE: (33, 133),
    LEFT_EYE: (362, 263),
    RIGHT_EAR: (234,),
    LEFT_EAR: (454,),
}
# Shoulder joints, fixed in the world like the template's body (world = the head frame of the
# reference, cm, y up, z out of the face): at the height where the template's shoulders
# (head_pose/template.py, _BODY_PROFILE) reach a half-width of about 19 cm, 3 cm inside that
# outline, at the profile's centre depth. The neck is their midpoint in the image, as Wan's is.
SHOULDER_HEIGHT, SHOULDER_HALF_WIDTH, SHOULDER_DEPTH = -21.0, 16.0, -6.5
WORLD_SHOULDERS = {
    RIGHT_SHOULDER: (-SHOULDER_HALF_WIDTH, SHOULDER_HEIGHT, SHOULDER_DEPTH),
    LEFT_SHOULDER: (SHOULDER_HALF_WIDTH, SHOULDER_HEIGHT, SHOULDER_DEPTH),
}


def skeleton_keypoints(cond) -> np.ndarray:
    """(F, 20, 2) keypoints in output pixels, OpenPose order; NaN where the template has none.

    Face keypoints follow the posed template head (``cond.face_pixels``), so head pose and
    viewpoint both move them; shoulders and neck are world points seen through each frame's
    camera, so only the viewpoint moves them, as the template's body stays put in the world.
    """
    frames = len(cond.c2w)
    keypoints = np.full((frames, NUM_KEYPOINTS, 2), np.nan)
    for index, vertices in FACE_VERTICES.items():
        keypoints[:, index] = cond.face_pixels[:, list(vertices)].mean(axis=1)
    world = np.array(list(WORLD_SHOULDERS.values()), float)
    held = np.broadcast_to(np.eye(4), (frames, 4, 4))  # world points: no head motion
    shoulders = posing.project_points(world, held, cond.K, cond.c2w)
    for slot, index in enumerate(WORLD_SHOULDERS):
        keypoints[:, index] = shoulders[:, slot]
    keypoints[:, NECK] = shoulders.mean(axis=1)
    return keypoints


def stick_width(height: int, width: int) -> int:
    """Limb half-thickness and keypoint radius in pixels, as Wan-Animate scales them."""
    return max(int(min(height, width) / 200) - 1, 1)


def draw_skeleton(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """One frame: (20, 2) keypoints (NaN: absent) -> (H, W, 3) uint8 RGB on black."""
    canvas = np.zeros((height, width, 3), np.uint8)
    thickness = stick_width(height, width)
    present = np.isfinite(keypoints).all(axis=1)
    for (first, second), color in zip(LIMBS, COLORS[: len(LIMBS)], strict=True):
        if not (present[first] and present[second]):
            continue
        (x1, y1), (x2, y2) = keypoints[first], keypoints[second]
        length = float(np.hypot(x2 - x1, y2 - y1))
        angle = int(np.degrees(np.arctan2(y2 - y1, x2 - x1)))
        centre = (int((x1 + x2) / 2), int((y1 + y2) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), thickness), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(c * LIMB_SHADE) for c in color])
    for index in np.flatnonzero(present):
        x, y = keypoints[index]
        cv2.circle(canvas, (int(x), int(y)), thickness, COLORS[index], thickness=-1)
    return canvas


def pose_video(cond) -> np.ndarray:
    """(F, H, W, 3) uint8: the skeleton of each output frame, drawn at the output size."""
    keypoints = skeleton_keypoints(cond)
    return np.stack([draw_skeleton(points, cond.height, cond.width) for points in keypoints])
