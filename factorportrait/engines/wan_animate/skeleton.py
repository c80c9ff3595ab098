"""Wan-Animate's pose video drawn from our posed template head and cameras.

Wan-Animate is conditioned on a skeleton video drawn by its preprocessing
(``wan/modules/animate/preprocess/process_pipepline.py`` of the Wan2.2 repository calls
``draw_aapose_by_meta_new`` of ``human_visualization.py`` in the same folder: ``draw_aapose_new``
with ``stickwidth_type='v2'`` and a score threshold of 0.5; first read in a public fork,
starsFriday/ComfyUI-MultiPoseToolkit, now checked against Wan2.2's own file). What we follow from
it, in our own code:

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
  way, as NaN, and those a pose estimator would not report (below): the skeleton is one a real
  video's pose estimation could give.

What a pose estimator reports (Wan draws only points scored at least 0.5, and its
``pose2d_utils.AAPoseMeta.is_valid`` takes none outside the image):
- a face point turned away from the camera is left out: each has an outward direction on the
  head (``FACE_OUTWARD``) and is drawn only while it faces the camera. An ear faces sideways and
  ``EAR_FORWARD_DEG`` forward, so the far ear goes once the head turns more than 20 to 25
  degrees from the camera (at 30 degrees an ear behind the cheek is not seen, where drawing it
  put it on the eye); an eye faces forward and ``EYE_OUTWARD_DEG`` outward, so the far eye goes
  past about 70 degrees and the nose past about 85;
- a point outside the frame is left out (the neck with either shoulder).

What a still camera films (the public model has no camera input: nothing tells it that a
camera moved, so a body that moves over a background that does not reads as the body moving):
the skeleton is drawn as the portrait's own camera sees it. The body (neck,
shoulders) stays where that camera sees it in every mode; a moving or novel camera reaches the
head only as its rotation relative to the camera (``still_camera_head``): the head turns, nods
or tilts on a still body, where the camera's rotation about it would have turned it; the
camera's distance, field of view and the body's or background's motion are not honoured
(``engine.what_it_cannot_honour`` says so).
"""

from __future__ import annotations

import cv2
import numpy as np

from ...config import CAMERA
from ...head_pose import posing
from ...viewpoint import intrinsics_from_fov

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


# Each face keypoint's outward direction on the head (head frame: x to the image's right for a
# frontal face, i.e. the person's left; y up; z out of the face). A point is reported while it
# faces the camera (the direction to the camera within 90 degrees of it).
EAR_FORWARD_DEG = 30.0  # an ear faces sideways, turned this far forward
EYE_OUTWARD_DEG = 20.0  # an eye faces forward, turned this far outward
_EAR, _EYE = np.radians(EAR_FORWARD_DEG), np.radians(EYE_OUTWARD_DEG)
FACE_OUTWARD = {
    NOSE: (0.0, 0.0, 1.0),
    RIGHT_EYE: (-np.sin(_EYE), 0.0, np.cos(_EYE)),
    LEFT_EYE: (np.sin(_EYE), 0.0, np.cos(_EYE)),
    RIGHT_EAR: (-np.cos(_EAR), 0.0, np.sin(_EAR)),
    LEFT_EAR: (np.cos(_EAR), 0.0, np.sin(_EAR)),
}


def still_camera(cond) -> tuple[np.ndarray, np.ndarray]:
    """K (3,3) and c2w (4,4) of the portrait's own camera, the still camera the skeleton is
    filmed by (our camera model: the default field of view over the framed output)."""
    K = intrinsics_from_fov(CAMERA.fov_deg, cond.height, cond.width)
    c2w = cond.c2w[0] if cond.reference_c2w is None else cond.reference_c2w
    return K, np.asarray(c2w, float)


def still_camera_head(cond) -> np.ndarray:
    """(F, 4, 4) head -> still-camera transforms: each frame's head rotated as the frame's own
    camera sees it (so a camera turning about the head turns the head), placed where the
    still camera sees the head (so the camera's distance and sideways motion do not move it)."""
    _, still_c2w = still_camera(cond)
    seen = np.linalg.inv(cond.c2w) @ cond.head_pose  # the head in each frame's own camera
    placed = np.linalg.inv(still_c2w) @ cond.head_pose  # the head in the still camera
    head = seen.copy()
    head[:, :3, 3] = placed[:, :3, 3]
    return head


def skeleton_keypoints(cond) -> np.ndarray:
    """(F, 20, 2) keypoints in output pixels, OpenPose order; NaN where the template has none
    and where a pose estimator would report none (turned away from the camera, or outside the
    frame).

    Filmed by the portrait's own, still camera (``still_camera``): the face keypoints follow the
    posed template head as ``still_camera_head`` places it, so head pose and the camera's
    rotation move them; shoulders and neck are the template's body, fixed in the world and seen
    by the still camera, so nothing moves them.
    """
    frames = len(cond.c2w)
    K, still_c2w = still_camera(cond)
    keypoints = np.full((frames, NUM_KEYPOINTS, 2), np.nan)
    head = still_camera_head(cond)
    vertices = cond.head_template.face_vertices
    identity = np.broadcast_to(np.eye(4), (frames, 4, 4))
    Ks = np.broadcast_to(K, (frames, 3, 3))
    for index, indices in FACE_VERTICES.items():
        point = vertices[list(indices)].mean(axis=0)
        in_camera = point @ head[:, :3, :3].transpose(0, 2, 1) + head[:, :3, 3]  # (F, 3)
        outward = head[:, :3, :3] @ np.asarray(FACE_OUTWARD[index])  # (F, 3)
        facing = np.einsum("fi,fi->f", outward, -in_camera) > 0  # towards the camera
        # The middle of the vertices in the image (an eye's two corners), as drawn.
        pixels = posing.project_points(vertices[list(indices)], head, Ks, identity).mean(axis=1)
        keypoints[facing, index] = pixels[facing]
    world = np.array(list(WORLD_SHOULDERS.values()), float)
    still = np.broadcast_to(still_c2w, (frames, 4, 4))
    shoulders = posing.project_points(world, identity, Ks, still)
    for slot, index in enumerate(WORLD_SHOULDERS):
        keypoints[:, index] = shoulders[:, slot]
    # The neck: the midpoint of the two shoulders in the image, as Wan derives it.
    keypoints[:, NECK] = shoulders.mean(axis=1)
    inside = (
        (keypoints[..., 0] >= 0)
        & (keypoints[..., 0] < cond.width)
        & (keypoints[..., 1] >= 0)
        & (keypoints[..., 1] < cond.height)
    )
    keypoints[~inside] = np.nan
    both = inside[:, RIGHT_SHOULDER] & inside[:, LEFT_SHOULDER]
    keypoints[~both, NECK] = np.nan  # no neck without both shoulders
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
