"""A scanline rasteriser that interpolates per-vertex attributes, compiled with numba.

The same algorithm as the normal maps' rasteriser (``head_pose.rasterizer``: spans of pixel
centres from each row's crossings with the triangle's edges, each edge evaluated from its lower
end so shared edges leave no cracks; a z-buffer where the nearest triangle wins, ties to the
lower index; perspective-correct barycentrics for the winners), with what the geometric engine
needs and the normals do not: any number of attributes per vertex (source coordinates,
visibility, fill colours) interpolated without the normals' renormalisation, the winning
triangle's depth kept, and back faces culled per triangle (the mouth's cavity is seen from
inside). It is a kernel of its own rather than a mode of the shared one so that the normal
maps' loop, which the preview and the tests pin bit for bit, stays exactly as it is.
"""

from __future__ import annotations

import numba
import numpy as np

NEAR_CM = 1.0


@numba.njit(cache=True, nogil=True)
def rasterize_attributes(vertices, attributes, faces, cull, K, out_attributes, out_depth, winner):
    """One frame. vertices (V,3) camera space (OpenCV), attributes (V,A), faces (T,3) wound
    counter-clockwise from outside, cull (T,) bool: drop the triangle when it faces away, K
    (3,3). Writes out_attributes (H,W,A) (0 on the background), out_depth (H,W) camera z (0 on
    the background) and winner (H,W) the triangle index (-1 on the background)."""
    height, width = out_depth.shape
    count = attributes.shape[1]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    out_depth[:] = 0.0
    winner[:] = -1
    planes = np.empty((len(faces), 9), np.float64)
    sx = np.empty(3)
    sy = np.empty(3)
    inv_z = np.empty(3)
    for t in range(len(faces)):
        i0, i1, i2 = faces[t, 0], faces[t, 1], faces[t, 2]
        if min(vertices[i0, 2], vertices[i1, 2], vertices[i2, 2]) <= NEAR_CM:
            continue
        if cull[t]:
            ax = vertices[i1, 0] - vertices[i0, 0]
            ay = vertices[i1, 1] - vertices[i0, 1]
            az = vertices[i1, 2] - vertices[i0, 2]
            bx = vertices[i2, 0] - vertices[i0, 0]
            by = vertices[i2, 1] - vertices[i0, 1]
            bz = vertices[i2, 2] - vertices[i0, 2]
            facing = (
                (ay * bz - az * by) * vertices[i0, 0]
                + (az * bx - ax * bz) * vertices[i0, 1]
                + (ax * by - ay * bx) * vertices[i0, 2]
            )
            if facing >= 0:
                continue
        for k in range(3):
            v = faces[t, k]
            inv_z[k] = 1.0 / vertices[v, 2]
            sx[k] = fx * vertices[v, 0] * inv_z[k] + cx
            sy[k] = fy * vertices[v, 1] * inv_z[k] + cy
        area = (sx[1] - sx[0]) * (sy[2] - sy[0]) - (sx[2] - sx[0]) * (sy[1] - sy[0])
        if abs(area) <= 1e-12:
            continue
        plane_a = plane_b = plane_c = 0.0
        for k in range(3):
            n, p = (k + 1) % 3, (k + 2) % 3
            a = (sy[n] - sy[p]) / area * inv_z[k]
            b = (sx[p] - sx[n]) / area * inv_z[k]
            c = (sx[n] * sy[p] - sx[p] * sy[n]) / area * inv_z[k]
            planes[t, k], planes[t, 3 + k], planes[t, 6 + k] = a, b, c
            plane_a += a
            plane_b += b
            plane_c += c
        row_first = max(int(np.ceil(min(sy[0], sy[1], sy[2]) - 0.5)), 0)
        row_last = min(int(np.floor(max(sy[0], sy[1], sy[2]) - 0.5)), height - 1)
        for row in range(row_first, row_last + 1):
            yc = row + 0.5
            left, right = np.inf, -np.inf
            for k in range(3):
                n = (k + 1) % 3
                if sy[n] < sy[k]:
                    lo_x, lo_y, hi_x, hi_y = sx[n], sy[n], sx[k], sy[k]
                else:
                    lo_x, lo_y, hi_x, hi_y = sx[k], sy[k], sx[n], sy[n]
                if hi_y > lo_y and lo_y <= yc <= hi_y:
                    x_at = lo_x + (yc - lo_y) / (hi_y - lo_y) * (hi_x - lo_x)
                    left = min(left, x_at)
                    right = max(right, x_at)
            if left > right:
                continue
            col_first = max(int(np.ceil(left - 0.5)), 0)
            col_last = min(int(np.floor(right - 0.5)), width - 1)
            row_inv_depth = plane_b * yc + plane_c
            for col in range(col_first, col_last + 1):
                inv_depth = np.float32(plane_a * (col + 0.5) + row_inv_depth)
                if inv_depth > out_depth[row, col]:
                    out_depth[row, col] = inv_depth
                    winner[row, col] = t

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
            out_depth[row, col] = 1.0 / total
            w0, w1, w2 = w0 / total, w1 / total, w2 / total
            i0, i1, i2 = faces[t, 0], faces[t, 1], faces[t, 2]
            for a in range(count):
                out_attributes[row, col, a] = (
                    w0 * attributes[i0, a] + w1 * attributes[i1, a] + w2 * attributes[i2, a]
                )


def render_attributes(vertices, attributes, faces, cull, K, height, width):
    """(H,W,A) float32 attributes, (H,W) float32 depth (0: background), (H,W) int32 winner."""
    out = np.empty((height, width, attributes.shape[1]), np.float32)
    depth = np.empty((height, width), np.float32)
    winner = np.empty((height, width), np.int32)
    rasterize_attributes(
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(attributes, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        np.ascontiguousarray(cull, dtype=np.bool_),
        np.ascontiguousarray(K, dtype=np.float64),
        out,
        depth,
        winner,
    )
    return out, depth, winner
