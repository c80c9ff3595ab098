"""The C3 ablation's landmark codes (issue 27): each frame's landmarks in the head's own frame,
so that they carry the expression and not the head's pose or the camera.

Landmarks in the aligned face crop (the codes before) moved ten times more with a head turn or
a camera move than with an expression: the crop's 2-D similarity removes the head's position,
size and roll, not its out-of-plane turn. Here a 3-D similarity (rotation, uniform scale,
shift; ``procrustes.umeyama``) takes each frame's stable landmarks (``STABLE_LANDMARKS``: nose,
eye corners, forehead, cheekbones, temples, which expressions barely move) onto MediaPipe's
canonical face, removing the pose, the camera and the face's size in the picture at once; what
is left of every other landmark is its expression (and the person's face shape, constant over a
clip).
"""

from __future__ import annotations

import numpy as np

from ..head_pose.template import STABLE_LANDMARKS
from ..procrustes import umeyama

# MediaPipe's canonical face at STABLE_LANDMARKS (cm; x right, y up, z out of the face), as read
# from the landmarker bundle by ``head_pose.load_canonical_face`` (a test checks they agree).
CANONICAL_STABLE = np.array(
    [
        [0.000000, -1.126865, 7.475604],
        [0.000000, -2.089024, 6.058267],
        [0.000000, -0.463170, 7.586580],
        [0.000000, 0.365669, 7.242870],
        [0.000000, 2.473255, 5.788627],
        [-1.405627, -1.714196, 5.241087],
        [0.000000, 3.271027, 5.236015],
        [0.000000, 1.059413, 6.774605],
        [0.000000, 1.728369, 6.316750],
        [1.405627, -1.714196, 5.241087],
        [-4.445859, 2.663991, 3.173422],
        [-1.856432, 2.585245, 3.757904],
        [4.445859, 2.663991, 3.173422],
        [1.856432, 2.585245, 3.757904],
        [0.000000, 4.885979, 5.385258],
        [0.000000, 8.261778, 4.481535],
        [-3.523964, 8.005976, 3.729163],
        [-1.619500, 6.599217, 4.921106],
        [0.000000, 6.545390, 5.027311],
        [3.523964, 8.005976, 3.729163],
        [1.619500, 6.599217, 4.921106],
        [-4.765501, -0.701554, 3.534632],
        [-7.542244, -1.049282, -2.431321],
        [-6.465170, 0.937119, 1.689873],
        [-7.664182, 0.673132, -2.435867],
        [4.765501, -0.701554, 3.534632],
        [7.542244, -1.049282, -2.431321],
        [6.465170, 0.937119, 1.689873],
        [7.664182, 0.673132, -2.435867],
        [-7.743095, 2.364999, -2.005167],
        [-7.555811, 4.106811, -0.991917],
        [7.743095, 2.364999, -2.005167],
        [7.555811, 4.106811, -0.991917],
    ]
)
# The codes' unit: the canonical stable points' root-mean-square distance from their centroid
# (about 6.3 cm), so a face's codes do not depend on its size in the picture or in the world.
FACE_SIZE_CM = float(np.sqrt(((CANONICAL_STABLE - CANONICAL_STABLE.mean(0)) ** 2).sum(1).mean()))
# MediaPipe's pixel landmarks (x right, y down, z away from the camera) -> the head's axes.
_TO_HEAD_AXES = np.array([1.0, -1.0, -1.0])


def head_frame_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(F, N, 3) MediaPipe landmarks in pixels (N >= 468; x right, y down, z away from the
    camera, in pixels as MediaPipe scales it) -> (F, N, 2) codes: each landmark's x (right) and
    y (up) in the head's own frame, relative to the canonical stable points' centroid, in units
    of FACE_SIZE_CM. The stable landmarks, which the fit pins, are 0: what varies is what moves
    with expression. Per frame, nothing from other frames: a training window and the same
    frames at inference get the same codes."""
    landmarks = np.asarray(landmarks, float)
    centre = CANONICAL_STABLE.mean(0)
    out = np.empty(landmarks.shape[:2] + (2,))
    for f, points in enumerate(landmarks):
        points = points * _TO_HEAD_AXES
        scale, rotation, shift = umeyama(points[STABLE_LANDMARKS], CANONICAL_STABLE)
        in_head = scale * points @ rotation.T + shift
        out[f] = (in_head[:, :2] - centre[:2]) / FACE_SIZE_CM
    out[:, STABLE_LANDMARKS] = 0.0
    return out
