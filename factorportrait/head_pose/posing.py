"""The template head posed per frame and seen from each camera: normal renders and projected
points."""

from __future__ import annotations

import numpy as np

from .rasterizer import rasterize
from .template import HeadTemplate


def render_head(
    template: HeadTemplate,
    head_pose: np.ndarray,
    K: np.ndarray,
    c2w: np.ndarray,
    height: int,
    width: int,
):
    """Normal maps of the posed template head (and the fixed neck) from each camera."""
    w2c = np.linalg.inv(c2w)
    head_to_cam = w2c @ head_pose
    rot_h, t_h = head_to_cam[:, :3, :3], head_to_cam[:, :3, 3]
    rot_b, t_b = w2c[:, :3, :3], w2c[:, :3, 3]
    vertices = np.concatenate(
        [
            np.einsum("fij,vj->fvi", rot_h, template.head_vertices) + t_h[:, None],
            np.einsum("fij,vj->fvi", rot_b, template.body_vertices) + t_b[:, None],
        ],
        axis=1,
    )
    normals = np.concatenate(
        [
            np.einsum("fij,vj->fvi", rot_h, template.head_normals),
            np.einsum("fij,vj->fvi", rot_b, template.body_normals),
        ],
        axis=1,
    )
    faces = np.concatenate([template.head_faces, template.body_faces + len(template.head_vertices)])
    return rasterize(vertices, normals, faces, K, height, width)


def project_points(
    points: np.ndarray, head_pose: np.ndarray, K: np.ndarray, c2w: np.ndarray
) -> np.ndarray:
    """Head-frame points (P,3) posed per frame and projected: (F, P, 2) pixels."""
    head_to_cam = np.linalg.inv(c2w) @ head_pose
    cam = np.einsum("fij,pj->fpi", head_to_cam[:, :3, :3], points) + head_to_cam[:, None, :3, 3]
    pixels = np.einsum("fij,fpj->fpi", K, cam)
    return pixels[..., :2] / pixels[..., 2:]
