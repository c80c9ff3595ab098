"""The geometric engine's frames: the portrait's own pixels on the posed template, over the
background layer, one output frame at a time (ARCHITECTURE.md: Conventions, for the cameras).

Per frame: the head (with the frame's expression) posed by ``head_pose`` and the body held in
the world, both seen from the frame's camera (``K``, ``c2w``: the same poses and cameras the
normal maps and ray maps use); rasterised with each vertex's source pixel in the reference,
its seen-ness and its fill colour interpolated; the reference sampled there (``cv2.remap``),
blended into the fill colour where the photo never saw the surface; over the background
plane warped by its homography for this camera.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .raster import render_attributes
from .scene import Scene, build_scene

GEOMETRY_NOTICE = "GEOMETRIC WARP of the photo: not diffusion, not FactorPortrait"


class Stopped(Exception):
    """Rendering was asked to stop before ``frame_index``."""

    def __init__(self, frame_index: int):
        super().__init__(f"geometry engine stopped before frame {frame_index}")
        self.frame_index = frame_index


def background_homography(scene: Scene, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """(3,3) reference pixels -> this camera's pixels for the background plane (fronto-parallel
    to the reference camera at ``scene.background_depth``)."""
    relative = np.linalg.inv(c2w) @ scene.reference_c2w  # reference camera -> this camera
    rotation, translation = relative[:3, :3], relative[:3, 3]
    plane = rotation + np.outer(translation, [0.0, 0.0, 1.0 / scene.background_depth])
    return K @ plane @ np.linalg.inv(scene.reference_K)


def render_frame(scene: Scene, conditioning, frame: int, cull: np.ndarray) -> np.ndarray:
    K = np.asarray(conditioning.K[frame], dtype=np.float64)
    c2w = np.asarray(conditioning.c2w[frame], dtype=np.float64)
    w2c = np.linalg.inv(c2w)
    head_to_camera = w2c @ np.asarray(conditioning.head_pose[frame], dtype=np.float64)
    head = scene.posed_head(frame) @ head_to_camera[:3, :3].T + head_to_camera[:3, 3]
    body = scene.body_vertices @ w2c[:3, :3].T + w2c[:3, 3]
    vertices = np.concatenate([head, body])
    faces = np.concatenate([scene.head_faces, scene.body_faces + len(head)])
    height, width = scene.background.shape[:2]
    attributes, _, winner = render_attributes(
        vertices, scene.attributes, faces, cull, K, height, width
    )
    background = cv2.warpPerspective(
        scene.background,
        background_homography(scene, K, c2w),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    texture = cv2.remap(
        scene.texture,
        attributes[..., 0] - 0.5,
        attributes[..., 1] - 0.5,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    seen = attributes[..., 2:3]
    colour = seen * texture[..., :3] + (1.0 - seen) * attributes[..., 3:6]
    alpha = (seen * (texture[..., 3:] * (1.0 / 255.0)) + (1.0 - seen)) * (winner >= 0)[..., None]
    out = alpha * colour + (1.0 - alpha) * background
    return np.clip(out + 0.5, 0.0, 255.0).astype(np.uint8)


def render_geometry(
    conditioning,
    *,
    progress: Callable[[int, int], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> np.ndarray:
    """(F, H, W, 3) uint8: the portrait's own pixels moved by the request's head poses,
    expressions and cameras (a geometric warp; label it with GEOMETRY_NOTICE). progress(done,
    total) after each frame; should_stop() is asked before each frame and, when true, raises
    Stopped(frame_index)."""
    scene = build_scene(conditioning)
    count = len(conditioning.c2w)
    height, width = scene.background.shape[:2]
    cull = np.r_[scene.cavity_cull, np.ones(len(scene.body_faces), bool)]
    frames = np.empty((count, height, width, 3), np.uint8)
    for frame in range(count):
        if should_stop is not None and should_stop():
            raise Stopped(frame)
        frames[frame] = render_frame(scene, conditioning, frame, cull)
        if progress is not None:
            progress(frame + 1, count)
    return frames
