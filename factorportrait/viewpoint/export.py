"""Everything the viewpoint factor produces for one trajectory, computed once, written to disk.

Used by the ``cameras`` command; the preview (later the web UI) builds on the same pieces.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import staged_output_dir, write_json, write_video
from .geometry import orbit_c2w
from .plucker import plucker_rays
from .trajectory import DEFAULT_VIEW, CameraPath, CameraView, Trajectory
from .visualize import rays_to_rgb, trajectory_figure

CAMERA_PATH_FORMAT = "factorportrait.camera-path"
CONVENTIONS = (
    "OpenCV cameras (x right, y down, z forward); c2w maps camera to world; world = head frame "
    "(origin at the head centre, x right of the frontal image, y up, z out of the face), "
    "centimetres; K in pixels, pixel centres at +0.5; fov vertical, degrees."
)


@dataclass
class CameraOutputs:
    trajectory: Trajectory
    path: CameraPath
    K: np.ndarray  # (F,3,3)
    c2w: np.ndarray  # (F,4,4)
    rays: np.ndarray  # (F,6,H,W) float32
    height: int
    width: int
    fps: float
    timings: dict[str, float] = field(default_factory=dict)

    def path_record(self, base: CameraView) -> dict:
        """The JSON document saved as trajectory.json."""
        return {
            "format": CAMERA_PATH_FORMAT,
            "version": 1,
            "conventions": CONVENTIONS,
            "frames": len(self.path),
            "height": self.height,
            "width": self.width,
            "fps": self.fps,
            "base_view": base.__dict__,
            "trajectory": self.trajectory.model_dump(mode="json"),
            "per_frame": self.path.as_dict(),
            "K": self.K.tolist(),
            "c2w": self.c2w.tolist(),
        }


def compute_camera_outputs(
    trajectory: Trajectory,
    frames: int,
    height: int,
    width: int,
    fps: float,
    base: CameraView = DEFAULT_VIEW,
) -> CameraOutputs:
    timings = {}
    start = time.perf_counter()
    path = trajectory.sample(frames, base)
    K, c2w = path.cameras(height, width)
    timings["trajectory_s"] = time.perf_counter() - start
    start = time.perf_counter()
    # No portrait here: the reference camera is the base view's (where a portrait is taken from).
    reference = orbit_c2w(base.azimuth, base.elevation, base.distance, base.roll)
    rays = plucker_rays(K, c2w, height, width, reference_c2w=reference)
    timings["rays_s"] = time.perf_counter() - start
    return CameraOutputs(trajectory, path, K, c2w, rays, height, width, fps, timings)


def write_camera_outputs(
    outputs: CameraOutputs, out: str | Path, base: CameraView = DEFAULT_VIEW
) -> dict[str, Path]:
    """Writes trajectory.json, rays.mp4 and trajectory.html into ``out`` (all or nothing)."""
    out = Path(out)
    with staged_output_dir(out) as stage:
        start = time.perf_counter()
        write_video(stage / "rays.mp4", rays_to_rgb(outputs.rays), outputs.fps)
        outputs.timings["rays_video_s"] = time.perf_counter() - start
        start = time.perf_counter()
        figure = trajectory_figure(
            outputs.K,
            outputs.c2w,
            outputs.height,
            outputs.width,
            title=f"{outputs.trajectory.name}: {outputs.trajectory.description}",
        )
        # Self-contained (plotly.js embedded): opens offline, no CDN.
        figure.write_html(stage / "trajectory.html", include_plotlyjs=True, full_html=True)
        outputs.timings["figure_s"] = time.perf_counter() - start
        write_json(stage / "trajectory.json", outputs.path_record(base))
    return {name: out / name for name in ("trajectory.json", "rays.mp4", "trajectory.html")}
