"""The head-pose factor: the canonical face from the landmarker bundle, the template head
built for the portrait's identity, head placement and retargeting, and the normal-map
rasteriser that shows the posed head to each camera."""

from .canonical import NUM_MESH_VERTICES, CanonicalFace, load_canonical_face
from .posing import project_points, render_head
from .rasterizer import NormalRender, normals_to_rgb, rasterize
from .retarget import (
    FaceTooClose,
    head_yaw_pitch_roll,
    nearest_rotation,
    place_heads,
    retarget_head_poses,
    solve_head_translations,
)
from .template import HeadTemplate, build_head_template, fit_proportions

__all__ = [
    "NUM_MESH_VERTICES",
    "CanonicalFace",
    "FaceTooClose",
    "HeadTemplate",
    "NormalRender",
    "build_head_template",
    "fit_proportions",
    "head_yaw_pitch_roll",
    "load_canonical_face",
    "nearest_rotation",
    "normals_to_rgb",
    "place_heads",
    "project_points",
    "rasterize",
    "render_head",
    "retarget_head_poses",
    "solve_head_translations",
]
