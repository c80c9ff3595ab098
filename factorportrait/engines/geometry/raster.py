"""A scanline rasteriser that interpolates per-vertex attributes, compiled with numba.

The triangles are drawn by the normal maps' rasteriser's traversal (``head_pose.rasterizer.
draw_triangles``: spans of pixel centres from each row's crossings with the triangle's edges,
each edge evaluated from its lower end so shared edges leave no cracks; a z-buffer where the
nearest triangle wins, ties to the lower index; the perspective-correct barycentric planes),
with back faces culled per triangle (the mouth's cavity is seen from inside). What is this
engine's own is how the winners are shaded: any number of attributes per vertex (source
coordinates, visibility, fill colours) interpolated with normalised weights, without the
normals' renormalisation, and the winning triangle kept.

The two compiled steps are called one after the other from Python rather than the shading
kernel calling the traversal: numba's on-disk cache (``cache=True``) keys a compiled function
on its own file only, so a kernel here that called into ``head_pose/rasterizer.py`` would keep
running a stale copy of the traversal after that file changed.
"""

from __future__ import annotations

import numba
import numpy as np

from ...head_pose.rasterizer import draw_triangles


@numba.njit(cache=True, nogil=True)
def _interpolate(attributes, faces, planes, winner, out_attributes, depth):
    """One frame, after ``draw_triangles``: out_attributes (H,W,A) the winners' attributes with
    perspective-correct barycentrics (0 on the background); depth from 1/z to z."""
    height, width = winner.shape
    count = attributes.shape[1]
    for row in range(height):
        yc = row + 0.5
        for col in range(width):
            t = winner[row, col]
            if t < 0:
                for a in range(count):
                    out_attributes[row, col, a] = 0.0
                continue
            xc = col + 0.5
            w0 = planes[t, 0] * xc + planes[t, 3] * yc + planes[t, 6]
            w1 = planes[t, 1] * xc + planes[t, 4] * yc + planes[t, 7]
            w2 = planes[t, 2] * xc + planes[t, 5] * yc + planes[t, 8]
            total = w0 + w1 + w2
            depth[row, col] = 1.0 / total
            w0, w1, w2 = w0 / total, w1 / total, w2 / total
            i0, i1, i2 = faces[t, 0], faces[t, 1], faces[t, 2]
            for a in range(count):
                out_attributes[row, col, a] = (
                    w0 * attributes[i0, a] + w1 * attributes[i1, a] + w2 * attributes[i2, a]
                )


def render_attributes(vertices, attributes, faces, cull, K, height, width):
    """One frame. vertices (V,3) camera space (OpenCV), attributes (V,A), faces (T,3) wound
    counter-clockwise from outside, cull (T,) bool: drop the triangle when it faces away, K
    (3,3). Returns (H,W,A) float32 attributes (0 on the background), (H,W) float32 camera z
    (0: background) and (H,W) int32 the winning triangle (-1: background)."""
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    out = np.empty((height, width, attributes.shape[1]), np.float32)
    depth = np.empty((height, width), np.float32)
    winner = np.empty((height, width), np.int32)
    planes = np.empty((len(faces), 9), np.float64)
    draw_triangles(
        np.ascontiguousarray(vertices, dtype=np.float64),
        faces,
        np.ascontiguousarray(cull, dtype=np.bool_),
        np.ascontiguousarray(K, dtype=np.float64),
        planes,
        depth,
        winner,
    )
    _interpolate(
        np.ascontiguousarray(attributes, dtype=np.float64), faces, planes, winner, out, depth
    )
    return out, depth, winner
