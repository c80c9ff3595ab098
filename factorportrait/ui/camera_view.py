"""The camera-path editor's 3D view and its thumbnail: the template head the normal maps are
rendered from (face, skull and shoulders, at the portrait's pose), the path, a frustum per
keyframe (the selected one highlighted), the reference camera (the portrait's) and what the
selected keyframe's camera sees, as a normal map from our own rasteriser (README: Web demo)."""

from __future__ import annotations

import functools
import logging

import numpy as np

from ..config import VIDEO
from ..head_pose import build_head_template, load_canonical_face, render_head
from ..head_pose.rasterizer import normals_to_rgb
from ..head_pose.template import HeadTemplate
from ..viewpoint import Trajectory
from ..viewpoint.geometry import orbit_c2w
from ..viewpoint.trajectory import DEFAULT_VIEW
from ..viewpoint.visualize import frustum_trace

log = logging.getLogger(__name__)

VIEW_HEIGHT_PX = 560
THUMBNAIL_PX = 192
COLOURS = {
    "head": "#e8c4a0",
    "path": "#222222",
    "keyframes": "#4c72b0",
    "selected": "#ff8c00",
    "reference": "#dd3333",
}


@functools.lru_cache(maxsize=4)
def template_head(landmarker: str | None = None) -> HeadTemplate | None:
    """The neutral template head (canonical proportions) the normal maps are rendered from;
    None when the face-landmarker model (which holds the canonical mesh) cannot be had."""
    from ..tracking import resolve_face_landmarker

    try:
        return build_head_template(load_canonical_face(str(resolve_face_landmarker(landmarker))))
    except Exception as exc:  # the editor still works without the head; say why in the log
        log.warning("the 3D view shows no head: %s", exc)
        return None


def keyframe_frames(trajectory: Trajectory, frames: int = VIDEO.frames) -> list[int]:
    """The frame index each keyframe lands on when the path is sampled at ``frames``."""
    return [int(round(key.t * (frames - 1))) for key in trajectory.keyframes]


def camera_figure(
    trajectory: Trajectory,
    template: HeadTemplate | None,
    selected: int = 0,
    *,
    frames: int = VIDEO.frames,
    size: int = VIDEO.height,
):
    """A Plotly figure: head mesh, the path (one colour, as in the legend), a frustum at each
    keyframe (``selected``, 0-based, highlighted) and the reference camera."""
    import plotly.graph_objects as go

    K, c2w = trajectory.sample(frames).cameras(size, size)
    centres = c2w[:, :3, 3]
    at_keys = keyframe_frames(trajectory, frames)
    selected = int(np.clip(selected, 0, len(at_keys) - 1))
    reference = orbit_c2w(DEFAULT_VIEW.azimuth, DEFAULT_VIEW.elevation, DEFAULT_VIEW.distance)
    depth = 0.18 * float(np.linalg.norm(centres, axis=1).mean())

    fig = go.Figure()
    if template is not None:
        vertices = np.concatenate([template.head_vertices, template.body_vertices])
        faces = np.concatenate(
            [template.head_faces, template.body_faces + len(template.head_vertices)]
        )
        fig.add_trace(
            go.Mesh3d(
                x=vertices[:, 0],
                y=vertices[:, 1],
                z=vertices[:, 2],
                i=faces[:, 0],
                j=faces[:, 1],
                k=faces[:, 2],
                name="template head (what the normal maps show)",
                color=COLOURS["head"],
                flatshading=False,
                lighting={"ambient": 0.55, "diffuse": 0.8, "specular": 0.1},
                hoverinfo="name",
                showlegend=True,
            )
        )
    fig.add_trace(
        go.Scatter3d(
            x=centres[:, 0],
            y=centres[:, 1],
            z=centres[:, 2],
            mode="lines",
            name="path",
            line={"color": COLOURS["path"], "width": 4},
            text=[f"frame {i}" for i in range(len(centres))],
            hoverinfo="text",
        )
    )
    others = [i for i in range(len(at_keys)) if i != selected]
    for label, rows, intrinsics, cameras, colour in (
        (
            "keyframe cameras",
            others,
            K[[at_keys[i] for i in others]],
            c2w[[at_keys[i] for i in others]],
            COLOURS["keyframes"],
        ),
        (
            f"keyframe {selected + 1} (selected)",
            [selected],
            K[[at_keys[selected]]],
            c2w[[at_keys[selected]]],
            COLOURS["selected"],
        ),
        ("reference camera (the portrait's)", [None], K[:1], reference[None], COLOURS["reference"]),
    ):
        if not rows:
            continue
        width = 5 if colour == COLOURS["selected"] else 3
        fig.add_trace(frustum_trace(label, intrinsics, cameras, size, size, depth, colour, width))
    extent = max(float(np.abs(centres).max()), 30.0) * 1.1
    axis = {"range": [-extent, extent], "zeroline": False, "title": {"font": {"size": 12}}}
    fig.update_layout(
        height=VIEW_HEIGHT_PX,
        uirevision="camera-path",  # keeps the user's rotation and zoom across redraws
        showlegend=True,
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        scene={
            "xaxis": {**axis, "title": {**axis["title"], "text": "x right (cm)"}},
            "yaxis": {**axis, "title": {**axis["title"], "text": "y up (cm)"}},
            "zaxis": {**axis, "title": {**axis["title"], "text": "z toward the face (cm)"}},
            "aspectmode": "cube",
            "camera": {"up": {"x": 0, "y": 1, "z": 0}, "eye": {"x": 1.1, "y": 0.6, "z": 1.5}},
        },
    )
    return fig


def keyframe_thumbnail(
    trajectory: Trajectory,
    template: HeadTemplate | None,
    selected: int = 0,
    *,
    size: int = THUMBNAIL_PX,
    frames: int = VIDEO.frames,
) -> np.ndarray | None:
    """What keyframe ``selected``'s camera sees: the normal map of the head at the portrait's
    pose (uint8 (size, size, 3)); None without a template."""
    if template is None:
        return None
    at_keys = keyframe_frames(trajectory, frames)
    frame = at_keys[int(np.clip(selected, 0, len(at_keys) - 1))]
    K, c2w = trajectory.sample(frames).cameras(size, size)
    render = render_head(template, np.eye(4)[None], K[frame : frame + 1], c2w[frame : frame + 1],
                         size, size)  # fmt: skip
    return normals_to_rgb(render.normals, render.mask)[0]


__all__ = ["camera_figure", "keyframe_frames", "keyframe_thumbnail", "template_head"]
