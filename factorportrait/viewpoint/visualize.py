"""Pictures of the viewpoint factor for previews: ray maps as video frames and a 3D figure of a
camera path. Plotly figures are plain data, so the web UI reuses them as they are; plotly loads
on the first figure (a preview needs none)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from ..frame_threads import over_frames
from .geometry import orbit_c2w
from .plucker import is_tensor
from .trajectory import DEFAULT_VIEW

if TYPE_CHECKING:
    import plotly.graph_objects as go

_HEAD_SEMI_AXES = (8.0, 11.0, 10.0)  # cm, x y z: a rough adult head around the head centre


def rays_to_rgb(rays, moment_scale: float | None = None) -> np.ndarray:
    """Ray maps (F,6,H,W) -> uint8 frames (F,H,2W,3): direction | moment, side by side.

    Directions are unit vectors, shown as (d+1)/2. Moments are scaled by their largest norm over
    the whole clip (``moment_scale``; computed here unless given), so brightness is comparable
    from frame to frame (frame 0, at the origin of the relative frame, is a flat grey).
    """
    rays = _as_float32(rays)
    frames, _, height, width = rays.shape
    scale = moment_scale if moment_scale is not None else ray_moment_scale(rays)
    out = np.empty((frames, height, 2 * width, 3), np.uint8)
    over_frames(_encode_rays, frames, rays, np.float32(127.5), np.float32(127.5 / scale), out)
    return out


def ray_moment_scale(rays) -> float:
    """The largest moment norm of a clip's ray maps (F,6,H,W): what ``rays_to_rgb`` divides
    moments by (at least 1e-6: frame 0 alone is all zeros)."""
    rays = _as_float32(rays)
    largest = max(over_frames(_largest_moment_squared, len(rays), rays))
    return max(float(np.sqrt(largest)), 1e-6)


def _as_float32(rays) -> np.ndarray:
    """numpy arrays or (CPU or GPU) torch tensors -> a C-contiguous float32 array."""
    if is_tensor(rays):
        rays = rays.detach().cpu().numpy()
    return np.ascontiguousarray(rays, dtype=np.float32)


# Compiled loops (cached on disk, see head_pose/rasterizer.py), frames shared out to threads
# (factorportrait.frame_threads): one pass over the maps, no whole-clip float temporaries (those
# cost more in page faults than the arithmetic does).
@numba.njit(cache=True, nogil=True)
def _encode_rays(rays, direction_gain, moment_gain, out, start, stop):
    """value -> (value * gain + 127.5), rounded, clamped to 0..255; float32 throughout. Pixel
    by pixel, so each output row is written once, in order."""
    _, _, height, width = rays.shape
    offset = np.float32(127.5 + 0.5)
    for frame in range(start, stop):
        for row in range(height):
            for col in range(width):
                for channel in range(3):
                    direction = rays[frame, 3 + channel, row, col] * direction_gain + offset
                    moment = rays[frame, channel, row, col] * moment_gain + offset
                    out[frame, row, col, channel] = np.uint8(min(max(direction, 0.0), 255.0))
                    out[frame, row, width + col, channel] = np.uint8(min(max(moment, 0.0), 255.0))


@numba.njit(cache=True, nogil=True)
def _largest_moment_squared(rays, start, stop):
    _, _, height, width = rays.shape
    largest = np.float32(0.0)
    for frame in range(start, stop):
        for row in range(height):
            for col in range(width):
                squared = (
                    rays[frame, 0, row, col] * rays[frame, 0, row, col]
                    + rays[frame, 1, row, col] * rays[frame, 1, row, col]
                    + rays[frame, 2, row, col] * rays[frame, 2, row, col]
                )
                largest = max(largest, squared)
    return largest


def trajectory_figure(
    K: np.ndarray,
    c2w: np.ndarray,
    height: int,
    width: int,
    *,
    title: str | None = None,
    max_frustums: int = 12,
    uirevision: str = "trajectory",
    reference_c2w: np.ndarray | None = None,
) -> go.Figure:
    """A Plotly 3D figure of a camera path: a head at the origin (with its nose showing which
    way the face looks), the path coloured by time, camera frustums along it, and the camera of
    the reference image (the portrait's; by default the default view's) that the rays are
    relative to."""
    import plotly.graph_objects as go

    K = np.asarray(K, dtype=np.float64)
    c2w = np.asarray(c2w, dtype=np.float64)
    if reference_c2w is None:
        view = DEFAULT_VIEW
        reference_c2w = orbit_c2w(view.azimuth, view.elevation, view.distance, view.roll)
    reference_c2w = np.asarray(reference_c2w, dtype=np.float64)
    centres = c2w[:, :3, 3]
    frames = len(c2w)
    distance = float(np.linalg.norm(centres, axis=1).mean())
    depth = 0.18 * distance  # frustum length: visible without hiding the head

    fig = go.Figure()
    fig.add_trace(_head_surface())
    fig.add_trace(
        go.Scatter3d(
            x=[0, 0],
            y=[0, -1.5],
            z=[9.5, 13.5],
            mode="lines",
            name="nose (face direction)",
            line={"color": "#b5651d", "width": 8},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter3d(
            x=centres[:, 0],
            y=centres[:, 1],
            z=centres[:, 2],
            mode="lines+markers",
            name="path",
            line={"color": np.arange(frames), "colorscale": "Viridis", "width": 5},
            marker={"size": 2.5, "color": np.arange(frames), "colorscale": "Viridis"},
            text=[f"frame {i}" for i in range(frames)],
            hoverinfo="text",
        )
    )
    shown = np.unique(np.linspace(0, frames - 1, min(frames, max_frustums)).round().astype(int))
    for label, intrinsics, cameras, colour in (
        ("cameras", K[shown], c2w[shown], "#4c72b0"),
        ("reference camera (the portrait's)", K[:1], reference_c2w[None], "#dd3333"),
    ):
        fig.add_trace(frustum_trace(label, intrinsics, cameras, height, width, depth, colour))
    extent = max(float(np.abs(centres).max()), 15.0) * 1.15
    axis = {"range": [-extent, extent], "zeroline": False}
    fig.update_layout(
        title=title,
        uirevision=uirevision,  # keeps the user's rotation/zoom when the figure is redrawn
        showlegend=True,
        legend={"orientation": "h", "y": 0.02},
        margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        scene={
            "xaxis": {**axis, "title": "x (cm)"},
            "yaxis": {**axis, "title": "y up (cm)"},
            "zaxis": {**axis, "title": "z face (cm)"},
            "aspectmode": "cube",
            "camera": {"up": {"x": 0, "y": 1, "z": 0}, "eye": {"x": 1.2, "y": 0.7, "z": 1.6}},
        },
    )
    return fig


def _head_surface() -> go.Surface:
    import plotly.graph_objects as go

    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 32), np.linspace(0, np.pi, 16))
    a, b, c = _HEAD_SEMI_AXES
    return go.Surface(
        x=a * np.cos(u) * np.sin(v),
        y=b * np.cos(v),
        z=c * np.sin(u) * np.sin(v),
        name="head",
        showscale=False,
        opacity=0.55,
        hoverinfo="name",
        colorscale=[[0, "#e8c4a0"], [1, "#e8c4a0"]],
        showlegend=True,
    )


def frustum_trace(label, K, c2w, height, width, depth, colour, line_width: float = 3):
    """One legend entry: the frusta of cameras ``c2w`` (``frustum_lines``) as plotly lines."""
    import plotly.graph_objects as go

    xs, ys, zs = frustum_lines(K, c2w, height, width, depth)
    return go.Scatter3d(
        x=xs,
        y=ys,
        z=zs,
        mode="lines",
        name=label,
        line={"color": colour, "width": line_width},
        hoverinfo="skip",
    )


def frustum_lines(K, c2w, height, width, depth):
    """Polyline coordinates (None-separated) of pyramids from each camera centre to its image
    corners at ``depth`` cm, with a tick on the top edge so roll is visible."""
    corners_px = np.array(
        [
            [0, 0, 1],
            [width, 0, 1],
            [width, height, 1],
            [0, height, 1],
            [width / 2, -0.25 * height, 1],
        ],
        dtype=np.float64,
    )
    xs, ys, zs = [], [], []
    for k, pose in zip(K, c2w, strict=True):
        rays = corners_px @ np.linalg.inv(k).T  # z = 1 in camera space
        points_cam = rays * depth
        points = points_cam @ pose[:3, :3].T + pose[:3, 3]
        centre = pose[:3, 3]
        tl, tr, br, bl, up = points
        segments = [
            [centre, tl],
            [centre, tr],
            [centre, br],
            [centre, bl],
            [tl, tr, br, bl, tl],
            [tl, up, tr],
        ]
        for segment in segments:
            for p in segment:
                xs.append(p[0])
                ys.append(p[1])
                zs.append(p[2])
            xs.append(None)
            ys.append(None)
            zs.append(None)
    return xs, ys, zs
