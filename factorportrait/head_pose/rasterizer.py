"""A scanline triangle rasteriser for normal maps, on the CPU, compiled with numba.

Why numba: the maintained rasterisers need a GPU (nvdiffrast), an OpenGL context (pyrender:
EGL/OSMesa, not headless-safe on a bare CPU box) or a heavy source build (PyTorch3D); trimesh
ray casting is exact but far too slow per frame (it is what the tests compare against). A
vectorised torch formulation (every covered pixel expanded to an index, one scatter-min z-buffer)
spends its time in gathers and in memory traffic of its temporaries, well short of 300 frames/s
at 512x512 on two cores. A plain loop over triangles and their pixels, compiled, touches each
output pixel once or twice and needs no temporaries. The compiled code is cached on disk
(``cache=True``), so only the first run on a machine pays for compiling it (a few seconds);
later processes load it in a fraction of a second. The compiled loop releases the GIL, so
frames are shared out to plain threads (factorportrait.frame_threads).

Algorithm, per frame:
1. project vertices, drop triangles behind the camera or facing away from it;
2. for each pixel row whose centre line crosses a triangle, the span of pixel centres inside it,
   from the row's intersections with the triangle's edges (each edge evaluated from its lower
   end, the same in both triangles that share it, so shared edges leave no cracks);
3. z-buffer: the nearest triangle wins each pixel, ties to the lower triangle index;
4. for the winners only, perspective-correct barycentrics interpolate vertex normals.

Steps 1 to 3 (``draw_triangles``) are also the geometric engine's (``engines.geometry.raster``
shades its own attributes from the winners and barycentric planes they leave, and culls back
faces per triangle; here every back face is culled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..frame_threads import over_frames

NEAR_CM = 1.0


@dataclass
class NormalRender:
    # (F, H, W, 3) float32 unit camera-space normals, 0 on the background; None when only
    # their colours were asked for
    normals: np.ndarray | None
    mask: np.ndarray  # (F, H, W) bool
    depth: np.ndarray | None  # (F, H, W) float32 camera z (cm), 0 on the background; or None
    colours: np.ndarray | None = None  # (F, H, W, 3) uint8 as normals_to_rgb, when asked for

    def to_rgb(self) -> np.ndarray:
        return self.colours if self.colours is not None else normals_to_rgb(self.normals, self.mask)


def normals_to_rgb(normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(F, H, W, 3) uint8 with RGB = (n + 1) / 2 on the head, black on the background."""
    normals = np.ascontiguousarray(normals, dtype=np.float32)
    rgb = np.empty(normals.shape, np.uint8)
    _encode_normals(
        normals.reshape(-1, 3), np.ascontiguousarray(mask, dtype=np.bool_).reshape(-1),
        rgb.reshape(-1, 3),
    )  # fmt: skip
    return rgb


@numba.njit(cache=True, nogil=True)
def _encode_normals(normals, mask, rgb):
    """One pass, float32 as numpy would: clip((n + 1) * 127.5 + 0.5, 0, 255), truncated."""
    for pixel in range(len(mask)):
        for axis in range(3):
            if mask[pixel]:
                value = (normals[pixel, axis] + np.float32(1.0)) * np.float32(127.5) + np.float32(
                    0.5
                )
                rgb[pixel, axis] = np.uint8(min(max(value, np.float32(0.0)), np.float32(255.0)))
            else:
                rgb[pixel, axis] = 0


def rasterize(
    vertices: np.ndarray,
    normals: np.ndarray,
    faces: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    *,
    depth: bool = True,
    colours: bool = False,
) -> NormalRender:
    """vertices, normals: (F, V, 3) in each frame's OpenCV camera space; faces: (T, 3) with
    outward (counter-clockwise from outside) winding; K: (F, 3, 3) pixels. ``depth=False``:
    no depth maps kept (each thread's z-buffer is one frame's scratch), 50 MB less to fill at
    49x512x512. ``colours=True``: the normals only as their uint8 colours (``normals_to_rgb``,
    encoded frame by frame from a scratch frame): what a picture needs, a quarter of the
    memory of the float maps, which are then not kept (``normals`` None)."""
    frames = len(vertices)
    # np.empty: the kernel writes every pixel of every frame once, background included.
    out_normals = np.empty((0, 0, 0, 3) if colours else (frames, height, width, 3), np.float32)
    out_colours = np.empty((frames, height, width, 3) if colours else (0, 0, 0, 3), np.uint8)
    out_mask = np.empty((frames, height, width), np.bool_)
    out_depth = np.empty((frames, height, width) if depth else (0, 0, 0), np.float32)
    inputs = (
        np.ascontiguousarray(vertices, dtype=np.float64),
        np.ascontiguousarray(normals, dtype=np.float64),
        np.ascontiguousarray(faces, dtype=np.int64),
        np.ascontiguousarray(K, dtype=np.float64),
    )
    # The kernel releases the GIL: one plain thread per core (factorportrait.frame_threads).
    over_frames(_rasterize_frames, frames, *inputs, out_normals, out_mask, out_depth, out_colours)
    return NormalRender(
        None if colours else out_normals,
        out_mask,
        out_depth if depth else None,
        out_colours if colours else None,
    )


@numba.njit(cache=True, nogil=True)
def _rasterize_frames(
    vertices, normals, faces, K, out_normals, out_mask, out_depth, out_colours, start, stop
):
    """Frames ``start`` to ``stop``, with one set of scratch buffers (a scratch z-buffer when
    ``out_depth`` is empty: no depth maps wanted; a scratch normal frame, encoded into
    ``out_colours``, when ``out_normals`` is empty: colours wanted instead)."""
    height, width = out_mask.shape[1:]
    winner = np.empty((height, width), np.int32)
    planes = np.empty((len(faces), 9), np.float64)
    shading = np.empty((len(faces), 9), np.float64)
    cull = np.ones(len(faces), np.bool_)  # the head is closed: every back face is hidden
    scratch_depth = np.empty((height, width) if len(out_depth) == 0 else (0, 0), np.float32)
    scratch_normals = np.empty(
        (height, width, 3) if len(out_normals) == 0 else (0, 0, 3), np.float32
    )
    for frame in range(start, stop):
        _rasterize_one(
            vertices[frame],
            normals[frame],
            faces,
            cull,
            K[frame],
            winner,
            planes,
            shading,
            scratch_normals if len(out_normals) == 0 else out_normals[frame],
            out_mask[frame],
            scratch_depth if len(out_depth) == 0 else out_depth[frame],
        )
        if len(out_normals) == 0:
            _encode_normals(
                scratch_normals.reshape(-1, 3),
                out_mask[frame].reshape(-1),
                out_colours[frame].reshape(-1, 3),
            )


@numba.njit(cache=True, nogil=True)
def draw_triangles(vertices, faces, cull, K, planes, depth, winner):
    """Steps 1 to 3 for one frame: the traversal this rasteriser shares with the geometric
    engine's (``engines.geometry.raster``), which interpolates its own attributes from what it
    leaves. vertices (V,3) in the OpenCV camera space, faces (T,3) wound counter-clockwise from
    outside, cull (T,) bool: drop the triangle when it faces away from the camera, K (3,3).
    Writes winner (H,W) int32: the nearest triangle at each pixel centre, -1 where there is
    none; depth (H,W) float32: its 1/z (the nearest surface is the largest value), 0 where there
    is none; planes (T,9) float64, for each drawn triangle t, its corner k's weight at the pixel
    centre (x, y), w_k = planes[t, k] x + planes[t, 3 + k] y + planes[t, 6 + k]: its screen
    barycentric over its z, so that w_0 + w_1 + w_2 = 1/z and w_k / (1/z) are the perspective-
    correct barycentrics (rows of triangles not drawn are left as they were)."""
    height, width = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    depth[:] = 0.0
    winner[:] = -1
    sx = np.empty(3)
    sy = np.empty(3)
    inv_z = np.empty(3)
    for t in range(len(faces)):
        i0, i1, i2 = faces[t, 0], faces[t, 1], faces[t, 2]
        # In front of the camera and, where culled, front-facing (outward normal towards the
        # camera at the origin).
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
        # Barycentric weights are planes over the screen: w_k = a_k x + b_k y + c_k, and so
        # are w_k / z_k (perspective-correct weights, up to their sum) and their sum, 1/z.
        plane_a = plane_b = plane_c = 0.0
        for k in range(3):
            n, p = (k + 1) % 3, (k + 2) % 3  # corner k is opposite the edge (n, p)
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
                # Each edge from its lower end: both triangles sharing it get the same x.
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
                # Strictly nearer: on a tie the earlier (lower-index) triangle keeps the pixel.
                if inv_depth > depth[row, col]:
                    depth[row, col] = inv_depth
                    winner[row, col] = t


@numba.njit(cache=True, nogil=True)
def _rasterize_one(
    vertices, normals, faces, cull, K, winner, planes, shading, out_normals, out_mask, out_depth
):
    """One frame. ``out_depth`` holds 1/z while triangles are drawn and z once they are
    shaded."""
    height, width = out_mask.shape
    draw_triangles(vertices, faces, cull, K, planes, out_depth, winner)
    # Each triangle's corner normals side by side (read per pixel, a few % faster than through
    # ``faces``).
    for t in range(len(faces)):
        for k in range(3):
            for axis in range(3):
                shading[t, 3 * k + axis] = normals[faces[t, k], axis]
    # Shade the winners: perspective-correct barycentrics interpolate the vertex normals.
    for row in range(height):
        yc = row + 0.5
        for col in range(width):
            t = winner[row, col]
            out_mask[row, col] = t >= 0
            if t < 0:
                out_normals[row, col, 0] = 0.0
                out_normals[row, col, 1] = 0.0
                out_normals[row, col, 2] = 0.0
                continue
            xc = col + 0.5
            w0 = planes[t, 0] * xc + planes[t, 3] * yc + planes[t, 6]
            w1 = planes[t, 1] * xc + planes[t, 4] * yc + planes[t, 7]
            w2 = planes[t, 2] * xc + planes[t, 5] * yc + planes[t, 8]
            nx = w0 * shading[t, 0] + w1 * shading[t, 3] + w2 * shading[t, 6]
            ny = w0 * shading[t, 1] + w1 * shading[t, 4] + w2 * shading[t, 7]
            nz = w0 * shading[t, 2] + w1 * shading[t, 5] + w2 * shading[t, 8]
            scale = 1.0 / np.sqrt(max(nx * nx + ny * ny + nz * nz, 1e-32))
            out_depth[row, col] = 1.0 / (w0 + w1 + w2)
            out_normals[row, col, 0] = nx * scale
            out_normals[row, col, 1] = ny * scale
            out_normals[row, col, 2] = nz * scale
