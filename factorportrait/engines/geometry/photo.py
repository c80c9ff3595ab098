"""The photo's own layers for the geometric engine: the person in it (OpenCV's GrabCut, started
from the template's silhouette), the photo with the person inpainted out (OpenCV's inpainting),
and the template's skull grown to the hair's outline. Kept apart from the mesh and its colours
(``scene``), which these feed."""

from __future__ import annotations

import cv2
import numpy as np

from ...head_pose.canonical import NUM_MESH_VERTICES


def project(points_world, K, c2w):
    """World points seen by a camera: (pixels (P, 2), camera-space points (P, 3))."""
    w2c = np.linalg.inv(c2w)
    cam = points_world @ w2c[:3, :3].T + w2c[:3, 3]
    pixels = cam @ K.T
    return pixels[:, :2] / pixels[:, 2:], cam


def _ray_extent(inside: np.ndarray, centre: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Per direction (image angles, radians), how far from ``centre`` (px) the run of
    ``inside`` pixels that starts there reaches."""
    height, width = inside.shape
    steps = np.arange(1, 2 * max(height, width))
    xs = centre[0] + np.cos(angles)[:, None] * steps
    ys = centre[1] + np.sin(angles)[:, None] * steps
    valid = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    hit = np.zeros(xs.shape, bool)
    hit[valid] = inside[ys[valid].astype(int), xs[valid].astype(int)]
    leaves = ~hit
    first_out = np.where(leaves.any(1), leaves.argmax(1), len(steps))
    return steps[np.minimum(first_out, len(steps) - 1)].astype(np.float64)


def fit_hair(head, silhouette, person, K, c2w) -> np.ndarray:
    """The skull grown about its centre, direction by direction, until its outline seen from the
    reference camera reaches the person's (the hair) above the ears: hair is volume the
    template's ellipsoid does not have, and it must turn with the head, not stay behind in the
    background. The face and the skull next to it stay put; at most 2x."""
    skull = head[NUM_MESH_VERTICES:]
    centre = skull.mean(0)
    centre_px, _ = project(centre[None], K, c2w)
    angles = np.linspace(-np.pi, np.pi, 144, endpoint=False)
    ratio = _ray_extent(person > 0.5, centre_px[0], angles) / np.maximum(
        _ray_extent(silhouette, centre_px[0], angles), 1.0
    )
    upward = np.sin(angles) < np.sin(np.radians(40.0))  # image y down: above, or just below
    ratio = np.where(upward, np.clip(ratio, 1.0, 2.0), 1.0)
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 3.0) ** 2)
    ratio = np.convolve(np.r_[ratio[-6:], ratio, ratio[:6]], kernel / kernel.sum(), "valid")
    pixels, _ = project(skull, K, c2w)
    vertex_angle = np.arctan2(pixels[:, 1] - centre_px[0, 1], pixels[:, 0] - centre_px[0, 0])
    scale = np.interp(vertex_angle, angles, ratio, period=2 * np.pi)
    near_face = np.linalg.norm(skull[:, None] - head[None, :NUM_MESH_VERTICES], axis=-1).min(1)
    weight = np.clip((near_face - 0.5) / 1.5, 0.0, 1.0)
    grown = head.copy()
    grown[NUM_MESH_VERTICES:] = centre + (skull - centre) * (1.0 + (scale - 1.0) * weight)[:, None]
    return grown


def person_mask(reference: np.ndarray, silhouette: np.ndarray, face_hull: np.ndarray):
    """(H, W) float32 in [0, 1]: the person in the photo, by GrabCut started from the
    template's silhouette grown by a fifth of the frame (probably the person), the face (surely)
    and the rest (surely not), on a half-size copy; feathered by a pixel."""
    height, width = silhouette.shape
    scale = 0.5 if max(height, width) > 256 else 1.0
    size = (round(width * scale), round(height * scale))
    small = cv2.resize(reference, size, interpolation=cv2.INTER_AREA)
    sil = cv2.resize(silhouette.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    hull = cv2.resize(face_hull.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    # Hair reaches well beyond the template's skull: the band that may still be the person is
    # a fifth of the frame wide (the element is twice that) around the silhouette.
    reach = max(3, round(0.4 * max(size)) | 1)
    grown = cv2.dilate(sil, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    # The whole band starts as "probably the person": the background's colour model is then
    # learnt from beyond it only, and the band's background pixels leave the person for it.
    mask = np.where(grown > 0, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    mask[hull > 0] = cv2.GC_FGD
    if (mask == cv2.GC_BGD).sum() < 50 or (mask == cv2.GC_FGD).sum() < 50:
        return silhouette.astype(np.float32)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    # GrabCut's colour models start from k-means on OpenCV's per-thread random state: seeded,
    # so one photo gives one mask whatever ran before on this thread (a cached scene equals a
    # fresh one).
    cv2.setRNGSeed(0)
    cv2.grabCut(
        cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK
    )
    person = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    person = cv2.morphologyEx(person, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    full = cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(cv2.GaussianBlur(full, (3, 3), 0), 0.0, 1.0)


def inpainted_background(reference: np.ndarray, person: np.ndarray) -> np.ndarray:
    """The photo with the person (grown by a few pixels) inpainted out by OpenCV (Telea), at a
    quarter of the size (the hole is large; the background is smooth) and pasted back."""
    height, width = person.shape
    hole = (person > 0.05).astype(np.uint8)
    reach = max(3, round(0.04 * max(height, width)) | 1)  # GrabCut's edge misses hair's tips
    hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach, reach)))
    size = (max(16, width // 4), max(16, height // 4))
    small = cv2.resize(reference, size, interpolation=cv2.INTER_AREA)
    small_hole = cv2.resize(hole, size, interpolation=cv2.INTER_NEAREST)
    small_hole = cv2.dilate(small_hole, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_hole, 9, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 3)
    up = cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC)
    weight = cv2.GaussianBlur(hole.astype(np.float32), (9, 9), 0)[..., None]
    out = reference.astype(np.float32) * (1 - weight) + up.astype(np.float32) * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
