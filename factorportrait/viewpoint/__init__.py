"""The viewpoint factor: cameras around the head, trajectories, presets and Plücker ray maps."""

from .geometry import intrinsics_from_fov, invert_rigid, orbit_c2w
from .plucker import plucker_rays, relative_cameras
from .presets import PRESET_DIR, load_preset, load_presets, preset_names, resolve_trajectory
from .trajectory import (
    DEFAULT_VIEW,
    SCHEMA_VERSION,
    CameraPath,
    CameraView,
    Keyframe,
    Trajectory,
    TrajectoryError,
)
from .visualize import rays_to_rgb, trajectory_figure

__all__ = [
    "DEFAULT_VIEW",
    "PRESET_DIR",
    "SCHEMA_VERSION",
    "CameraPath",
    "CameraView",
    "Keyframe",
    "Trajectory",
    "TrajectoryError",
    "intrinsics_from_fov",
    "invert_rigid",
    "load_preset",
    "load_presets",
    "orbit_c2w",
    "plucker_rays",
    "preset_names",
    "rays_to_rgb",
    "relative_cameras",
    "resolve_trajectory",
    "trajectory_figure",
]
