"""The geometric engine's frames: the portrait's own pixels on the posed template, over the
layers behind it, one output frame at a time (ARCHITECTURE.md: Conventions, for the cameras).

Per frame: the head (with the frame's expression) posed by ``head_pose`` and the body held in
the world, both seen from the frame's camera (``K``, ``c2w``: the same poses and cameras the
normal maps and ray maps use: the head sits where the previewed normals are); rasterised with
each vertex's point in the reference camera, its seen-ness and its fill colour interpolated;
the reference sampled where that point projects (``cv2.remap``), blended into the fill colour
where the photo never saw the surface; over the body's and the backdrop's planes, each warped
by its homography for this camera. Per-pixel passes are numba loops (``compose``); no torch.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .cache import SceneCache
from .compose import composite, source_maps
from .raster import render_attributes
from .scene import Scene, build_scene

GEOMETRY_NOTICE = "GEOMETRIC WARP of the photo: not diffusion, not FactorPortrait"
BACKGROUND_OBLIQUE_DEG = 35.0
FILL_OPAQUE_DEG = 12.0


class Stopped(Exception):
    """Rendering was asked to stop before ``frame_index``."""

    def __init__(self, frame_index: int):
        super().__init__(f"geometry engine stopped before frame {frame_index}")
        self.frame_index = frame_index


def background_homography(
    scene: Scene, K: np.ndarray, c2w: np.ndarray, depth: float | None = None
) -> np.ndarray:
    """(3,3) reference pixels -> this camera's pixels for the background plane: fronto-parallel
    to the reference camera at ``depth`` (default: ``scene.background_depth``); turned towards a camera more than
    BACKGROUND_OBLIQUE_DEG round, so it is never seen edge on."""
    relative = np.linalg.inv(c2w) @ scene.reference_c2w  # reference camera -> this camera
    rotation, translation = relative[:3, :3], relative[:3, 3]
    normal = np.array([0.0, 0.0, 1.0])  # in the reference camera
    axis = rotation.T @ normal  # this camera's optical axis, in the reference camera
    angle = np.degrees(np.arccos(np.clip(axis @ normal, -1.0, 1.0)))
    if angle > BACKGROUND_OBLIQUE_DEG:
        fraction = 1.0 - BACKGROUND_OBLIQUE_DEG / angle
        normal = normal + fraction * (axis - normal)
        normal /= np.linalg.norm(normal)
    depth = scene.background_depth if depth is None else depth
    offset = normal @ np.array([0.0, 0.0, depth])
    plane = rotation + np.outer(translation, normal / offset)
    return K @ plane @ np.linalg.inv(scene.reference_K)


def _fill_opacity(view_deg: float) -> float:
    """0 from the photo's own view (its background shows where the template is larger than
    the head), 1 from FILL_OPAQUE_DEG round (the head's far side must not show through)."""
    return float(np.clip((view_deg - 2.0) / (FILL_OPAQUE_DEG - 2.0), 0.0, 1.0))


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


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
    # How far round from the reference's view this camera sees the head, and the world.
    head_pose = np.asarray(conditioning.head_pose[frame], dtype=np.float64)
    camera_in_head = np.linalg.solve(head_pose, np.r_[c2w[:3, 3], 1.0])[:3]
    reference_centre = scene.reference_c2w[:3, 3]
    head_view = _angle_deg(camera_in_head, reference_centre)
    attributes = scene.attributes_for(head_view, _angle_deg(c2w[:3, 3], reference_centre), frame)
    attributes, _, winner = render_attributes(vertices, attributes, faces, cull, K, height, width)
    background = cv2.warpPerspective(
        scene.background,
        background_homography(scene, K, c2w),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    body = cv2.warpPerspective(
        scene.body_layer,
        background_homography(scene, K, c2w, scene.body_depth),
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    # Projective texturing: the surface point in the reference camera, projected there.
    map_x = np.empty((height, width), np.float32)
    map_y = np.empty((height, width), np.float32)
    source_maps(attributes, winner, scene.reference_K, map_x, map_y)
    texture = cv2.remap(
        scene.texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    # The photo where it saw the person; elsewhere the fill colour: opaque where the photo
    # never saw the surface, and, as the view turns away from the photo's, where the photo saw
    # the background through the template (the skull is larger than the head there).
    out = np.empty((height, width, 3), np.uint8)
    composite(attributes, winner, texture, background, body, _fill_opacity(head_view), out)
    return out


def render_geometry(
    conditioning,
    *,
    progress: Callable[[int, int], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
    scenes: SceneCache | None = None,
) -> np.ndarray:
    """(F, H, W, 3) uint8: the portrait's own pixels moved by the request's head poses,
    expressions and cameras (a geometric warp; label it with GEOMETRY_NOTICE). progress(done,
    total) after each frame; should_stop() is asked before each frame and, when true, raises
    Stopped(frame_index). With ``scenes``, a portrait's scene is built once and reused."""
    scene = build_scene(conditioning) if scenes is None else scenes.scene_for(conditioning)
    count = len(conditioning.c2w)
    height, width = scene.background.shape[:2]
    cull = np.r_[scene.head_cull, np.ones(len(scene.body_faces), bool)]
    frames = np.empty((count, height, width, 3), np.uint8)
    for frame in range(count):
        if should_stop is not None and should_stop():
            raise Stopped(frame)
        frames[frame] = render_frame(scene, conditioning, frame, cull)
        if progress is not None:
            progress(frame + 1, count)
    return frames
