"""The geometric engine's per-pixel passes, compiled with numba (numpy's temporaries cost
about 20 ms a frame at 512x512; these loops touch each pixel once)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def source_maps(attributes, winner, K, map_x, map_y):
    """Each covered pixel's surface point (attributes[..., 0:3], in the reference camera)
    projected into the reference: remap's maps (pixel centres at integers)."""
    height, width = winner.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] - 0.5, K[1, 2] - 0.5
    for row in range(height):
        for col in range(width):
            z = attributes[row, col, 2]
            if winner[row, col] < 0 or z <= 0.0:
                map_x[row, col] = -1.0
                map_y[row, col] = -1.0
            else:
                map_x[row, col] = fx * attributes[row, col, 0] / z + cx
                map_y[row, col] = fy * attributes[row, col, 1] / z + cy


@numba.njit(cache=True, nogil=True)
def composite(attributes, winner, texture, background, body, fill_opacity, out):
    """out (H,W,3) uint8: the backdrop, the body layer over it (its alpha), and the mesh over
    both: the photo (texture RGBA: the person's alpha) weighted by the seen-ness
    (attributes[..., 3]), the fill colour (attributes[..., 4:7]) opaque where unseen and, by
    ``fill_opacity``, where the photo saw the background through the mesh."""
    height, width = winner.shape
    for row in range(height):
        for col in range(width):
            body_alpha = body[row, col, 3] / 255.0
            alpha = 0.0
            photo = 0.0
            fill = 0.0
            if winner[row, col] >= 0:
                seen = attributes[row, col, 3]
                photo = seen * texture[row, col, 3] / 255.0
                fill = (1.0 - photo) * ((1.0 - seen) + seen * fill_opacity)
                alpha = photo + fill
            for c in range(3):
                under = (
                    background[row, col, c] * (1.0 - body_alpha) + body[row, col, c] * body_alpha
                )
                value = under * (1.0 - alpha)
                if alpha > 0.0:
                    value += photo * texture[row, col, c] + fill * attributes[row, col, 4 + c]
                out[row, col, c] = np.uint8(min(max(value + 0.5, 0.0), 255.0))
