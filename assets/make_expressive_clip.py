"""Makes assets/example_expressive.mp4 from assets/example_portrait.jpg (from the repo root:
``python -m assets.make_expressive_clip``). The project's own expressive driving clip: the
public-domain portrait's face warped along MediaPipe's tracked mesh (a piecewise-affine warp over
the 478 landmarks) through a smile, two blinks, an open mouth and raised brows, while the head
rolls, sways and pushes in. Each expression has its own time in ``SCHEDULE``, so a test can
check what the tracker reads back against it. Deterministic: the same frames every time (the
mp4's bytes also depend on the ffmpeg build).

The portrait already smiles, so "at rest" here is the photo with the smile relaxed: the mouth's
corners drawn in and down; a smile is the photo's own smile, widened.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from factorportrait.io import write_video
from factorportrait.io.media import read_image
from factorportrait.tracking import NUM_LANDMARKS, FaceTracker

ASSETS = Path(__file__).resolve().parent
OUTPUT = ASSETS / "example_expressive.mp4"
FPS, FRAMES, SIZE = 16, 65, 384  # 65 = 4k+1 frames: the whole clip drives a default request
FACE_HEIGHT = 0.5  # of the frame: forehead-to-chin, so the eyes and mouth have pixels to move

# When each expression plays: (start, end) in seconds, with a raised-cosine ramp of RAMP[name]
# seconds at each end and fully on in between. No two overlap, so each is seen alone.
SCHEDULE = {
    "smile": [(0.2, 1.15)],
    "blink": [(1.15, 1.6), (3.55, 4.0)],
    "jaw": [(1.6, 2.6)],
    "brow": [(2.6, 3.55)],
}
RAMP = {"smile": 0.25, "blink": 0.12, "jaw": 0.25, "brow": 0.25}
RELAXED_SMILE = -0.6  # the smile's setting at rest (the photo's own smile is 0)

# MediaPipe face-mesh landmark indices (the canonical face model's numbering).
UPPER_LIP_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_LIP_INNER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
LOWER_LIP_OUTER = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
MOUTH_CORNERS = {61: -1, 78: -1, 291: 1, 308: 1}  # and which way is outward (image x)
# Per eye: the upper lid, the lower lid (corner to corner), the lid's crease above, the iris.
EYES = [
    (
        [246, 161, 160, 159, 158, 157, 173],
        [33, 7, 163, 144, 145, 153, 154, 155, 133],
        [247, 30, 29, 27, 28, 56, 190],
        [468, 469, 470, 471, 472],
    ),
    (
        [466, 388, 387, 386, 385, 384, 398],
        [263, 249, 390, 373, 374, 380, 381, 382, 362],
        [467, 260, 259, 257, 258, 286, 414],
        [473, 474, 475, 476, 477],
    ),
]
# Brows (upper and lower rows), inner end last; and the forehead above them.
BROWS = [
    [70, 63, 105, 66, 107, 46, 53, 52, 65, 55],
    [300, 293, 334, 296, 336, 276, 283, 282, 295, 285],
]
BROW_INNER = {107, 66, 55, 65, 336, 296, 285, 295}
FOREHEAD = [9, 151, 108, 337, 69, 299, 104, 333, 67, 297, 109, 338, 10, 107, 336]
MOUTH_INSIDE_RGB = (52, 18, 20)


def weight(name: str, t: float) -> float:
    """How far expression ``name`` is on at ``t`` seconds, in [0, 1] (SCHEDULE)."""
    value = 0.0
    for start, end in SCHEDULE[name]:
        if start <= t <= end:
            ramp = min(t - start, end - t, RAMP[name]) / RAMP[name]
            value = max(value, 0.5 - 0.5 * np.cos(np.pi * ramp))
    return float(value)


def frame_times() -> np.ndarray:
    return np.arange(FRAMES) / FPS


def deformed_landmarks(points: np.ndarray, t: float) -> np.ndarray:
    """The 2-D landmarks (N, 2) of the portrait moved to the expression at ``t``."""
    moved = points.copy()
    face_height = np.linalg.norm(points[152] - points[10])
    mouth_width = np.linalg.norm(points[291] - points[61])
    mouth_centre = (points[13] + points[14]) / 2

    # Smile: RELAXED_SMILE (corners in and down) at rest, +1 (corners out and up) at its peak.
    smile = RELAXED_SMILE + (1 - RELAXED_SMILE) * weight("smile", t)
    for index in range(len(points)):
        for corner, outward in MOUTH_CORNERS.items():
            reach = np.exp(
                -np.sum((points[index] - points[corner]) ** 2) / (0.3 * mouth_width) ** 2
            )
            moved[index] += reach * smile * mouth_width * np.array([0.1 * outward, -0.08])

    # Jaw: the lower lip and everything below the mouth drops, less towards the cheeks and the
    # mouth's corners (so the lips part in an oval).
    drop = weight("jaw", t) * 0.16 * face_height
    lower_lip = set(LOWER_LIP_INNER + LOWER_LIP_OUTER) - set(MOUTH_CORNERS)
    for index in range(len(points)):
        across = np.exp(-(((points[index, 0] - mouth_centre[0]) / (0.45 * face_height)) ** 2))
        below = (points[index, 1] - mouth_centre[1]) / (0.08 * face_height)
        share = float(np.clip(below, 0.0, 1.0))
        if index in lower_lip:
            off_centre = (points[index, 0] - mouth_centre[0]) / (0.5 * mouth_width)
            share = 0.35 + 0.65 * max(0.0, 1.0 - off_centre**2)
        if index in MOUTH_CORNERS:
            share = 0.3
        moved[index, 1] += drop * share * across

    # Blink: the upper lid and the iris come down onto the lower lid; the crease follows halfway.
    close = weight("blink", t)
    for upper, lower, crease, iris in EYES:
        order = np.argsort(points[lower, 0])
        lid_x, lid_y = points[lower, 0][order], points[lower, 1][order]
        for index, share in [(i, 1.0) for i in upper + iris] + [(i, 0.45) for i in crease]:
            target = np.interp(points[index, 0], lid_x, lid_y) - 0.15 * (lid_y.max() - lid_y.min())
            moved[index, 1] += close * share * (target - points[index, 1])

    # Brows: up, the inner ends most (browInnerUp); the forehead above makes room.
    lift = weight("brow", t) * 0.09 * face_height
    for brow in BROWS:
        for index in brow:
            moved[index, 1] -= lift * (1.0 if index in BROW_INNER else 0.6)
    for index in set(FOREHEAD) - BROW_INNER:
        moved[index, 1] -= 0.4 * lift
    return moved


def head_motion(t: float, centre: np.ndarray, face_height: float) -> np.ndarray:
    """2x3 similarity, portrait pixels -> output pixels: the face framed, rolling, swaying and
    pushing in over the clip."""
    phase = 2 * np.pi * t / (FRAMES / FPS)
    roll = 8.0 * np.sin(phase)
    scale = FACE_HEIGHT * SIZE / face_height * (1.0 + 0.05 * (1 - np.cos(phase)))
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, scale)
    matrix[:, 2] += (SIZE / 2 - centre[0] + 14 * np.sin(2 * phase), SIZE / 2 - centre[1])
    return matrix


def piecewise_affine_map(
    source: np.ndarray, target: np.ndarray, triangles: np.ndarray, height: int, width: int
) -> np.ndarray:
    """(H, W, 2) float32: for each pixel of the target mesh, where to sample the source image
    (triangles index both point sets; pixels outside every triangle map to themselves)."""
    owner = np.full((height, width), -1, np.int32)
    for index, triangle in enumerate(triangles):
        cv2.fillConvexPoly(owner, np.round(target[triangle]).astype(np.int32), index)
    # Exact per-triangle affines target -> source (the fill above only says who owns a pixel).
    affines = np.stack(
        [
            cv2.getAffineTransform(
                target[triangle].astype(np.float32), source[triangle].astype(np.float32)
            )
            for triangle in triangles
        ]
    )
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
    mapped = np.einsum("hwij,hwj->hwi", affines[np.maximum(owner, 0)], pixels)
    return np.where(owner[..., None] >= 0, mapped, pixels[..., :2]).astype(np.float32)


def render(portrait: np.ndarray, points: np.ndarray, triangles: np.ndarray, t: float) -> np.ndarray:
    """One frame: the expression at ``t`` warped into the portrait, then the head motion."""
    height, width = portrait.shape[:2]
    face = deformed_landmarks(points[:NUM_LANDMARKS], t)
    mesh = np.concatenate([face, points[NUM_LANDMARKS:]])  # the anchors stay put
    sample = piecewise_affine_map(points, mesh, triangles, height, width)
    expressed = cv2.remap(portrait, sample, None, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    # The opened mouth: dark inside the inner lips, its edge softened.
    inside = np.concatenate([face[UPPER_LIP_INNER], face[LOWER_LIP_INNER][::-1]])
    mask = np.zeros((height, width), np.float32)
    cv2.fillPoly(mask, [np.round(inside * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    mask = cv2.GaussianBlur(mask, (3, 3), 0.7)[..., None] * weight("jaw", t) ** 0.5
    expressed = (expressed * (1 - mask) + np.array(MOUTH_INSIDE_RGB) * mask).astype(np.uint8)
    centre = (points[10] + points[152]) / 2
    matrix = head_motion(t, centre, np.linalg.norm(points[152] - points[10]))
    return cv2.warpAffine(
        expressed, matrix, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def portrait_mesh(portrait: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The portrait's 478 tracked landmarks plus fixed anchors (a ring well outside the face
    and the image border, which never move), and a triangulation of them all."""
    with FaceTracker() as tracker:
        face = tracker.track_image(portrait)
    if face is None:
        raise RuntimeError("no face found in the example portrait")
    points = face.landmarks[:, :2].astype(np.float64)
    height, width = portrait.shape[:2]
    centre = points.mean(axis=0)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    radius = 1.0 * np.linalg.norm(points[152] - points[10])
    ring = centre + radius * np.stack([np.cos(angles), 1.2 * np.sin(angles)], axis=1)
    edge = np.linspace(0, 1, 9)
    border = np.concatenate(
        [
            np.stack([edge * (width - 1), np.zeros(9)], 1),
            np.stack([edge * (width - 1), np.full(9, height - 1)], 1),
            np.stack([np.zeros(9), edge * (height - 1)], 1),
            np.stack([np.full(9, width - 1), edge * (height - 1)], 1),
        ]
    )
    everything = np.concatenate([points, ring, border])
    return everything, Delaunay(everything).simplices


def make_frames() -> np.ndarray:
    portrait = read_image(ASSETS / "example_portrait.jpg")
    points, triangles = portrait_mesh(portrait)
    return np.stack([render(portrait, points, triangles, t) for t in frame_times()])


def main() -> None:
    write_video(OUTPUT, make_frames(), FPS, crf=23)


if __name__ == "__main__":
    main()
