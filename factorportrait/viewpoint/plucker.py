"""Plücker ray maps: the viewpoint condition of the model (ARCHITECTURE.md: Conventions).

Per pixel, the ray through the pixel centre is encoded as six numbers ``[o x d, d]``: ``d`` the
unit direction in world space and ``o`` the camera centre, so ``o x d`` is the ray's moment.
Poses are first made relative to the camera of the REFERENCE image (the portrait at inference,
the reference frame's camera in training), and translations are divided by that camera's
distance to the head centre (so the map does not depend on scene scale). A camera that is the
reference camera gives the "identity" map; a static novel view gives a constant map that
differs from it, so viewpoint reaches the model through the rays (ARCHITECTURE.md: Rays).
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import InputError
from ..frame_threads import over_frames


def relative_cameras(c2w, reference_c2w) -> np.ndarray:
    """c2w (F,4,4) -> poses relative to the reference camera (4,4), translation in units of
    the reference camera's distance to the head centre.

    The head centre is the world origin, so that distance is the norm of the reference's
    translation. Cameras equal to the reference come out as the exact identity (no round-off).
    Computed in float64 (numpy arrays or torch tensors in, numpy out): these are small and feed
    every pixel.
    """
    c2w = _as_float64(c2w)
    reference = _as_float64(reference_c2w)
    if reference.shape != (4, 4) or not np.isfinite(reference).all():
        raise InputError("reference camera: expected one finite 4x4 camera-to-world matrix")
    distance = np.linalg.norm(reference[:3, 3])
    if distance < 1e-6:
        raise InputError("cameras: the reference camera sits at the head centre (distance 0)")
    relative = np.linalg.inv(reference) @ c2w
    same = (c2w == reference).reshape(len(c2w), -1).all(axis=1)
    relative[same] = np.eye(4)
    relative[:, :3, 3] /= distance
    return relative


def plucker_rays(K, c2w, height: int, width: int, *, reference_c2w):
    """Plücker ray maps (F, 6, H, W) float32 for K (F,3,3) in pixels and world c2w (F,4,4),
    relative to the camera of the reference image ``reference_c2w`` (4,4).

    Channels 0-2 are the moment ``o x d``, channels 3-5 the unit direction ``d``, both in the
    reference camera's frame. Accepts numpy arrays or torch tensors and returns the same kind
    (tensors stay on their device; torch is imported only for them, so a preview on the CPU
    never loads it).
    """
    to_rays = ray_matrices(K, c2w, height, width, reference_c2w=reference_c2w)
    if is_tensor(c2w):
        return _rays_torch(to_rays, height, width, c2w.device)
    rays = np.empty((len(to_rays), 6, height, width), np.float32)
    over_frames(_rays_frames, len(to_rays), to_rays, rays)
    return rays


def ray_matrices(K, c2w, height: int, width: int, *, reference_c2w) -> np.ndarray:
    """(F, 6, 3) float32: the matrix that takes a homogeneous pixel centre (u, v, 1) to its ray's
    moment and direction, both still to be divided by the direction's length.

    Direction and moment are both linear in p = (u, v, 1): d ~ M p with M = R K^-1, and
    o x d = [o]x d ~ [o]x M p, and they share the normaliser |M p|. So one (6, 3) matrix per
    frame and one pass over the pixels give all six channels."""
    K = _as_float64(K)
    c2w = _as_float64(c2w)
    _check_shapes(K, c2w, height, width)
    relative = relative_cameras(c2w, reference_c2w)
    pixel_to_world = relative[:, :3, :3] @ np.linalg.inv(K)
    to_rays = np.concatenate([_skew(relative[:, :3, 3]) @ pixel_to_world, pixel_to_world], axis=1)
    return np.ascontiguousarray(to_rays, dtype=np.float32)


# Compiled (cached on disk, see head_pose/rasterizer.py) rather than torch: one pass that writes
# each output value once, no (F,6,H*W) temporaries, about five times faster than the best torch
# formulation on two cores, and a preview that never imports torch starts two seconds sooner.
@numba.njit(cache=True, nogil=True)
def _rays_frames(to_rays, rays, start, stop):
    """Frames ``start`` to ``stop``: float32 throughout, as the torch path computes them."""
    _, _, height, width = rays.shape
    one = np.float32(1.0)
    for frame in range(start, stop):
        m = to_rays[frame]
        for row in range(height):
            v = np.float32(row + 0.5)
            for col in range(width):
                u = np.float32(col + 0.5)
                dx = m[3, 0] * u + m[3, 1] * v + m[3, 2]
                dy = m[4, 0] * u + m[4, 1] * v + m[4, 2]
                dz = m[5, 0] * u + m[5, 1] * v + m[5, 2]
                scale = one / np.sqrt(dx * dx + dy * dy + dz * dz)
                rays[frame, 0, row, col] = (m[0, 0] * u + m[0, 1] * v + m[0, 2]) * scale
                rays[frame, 1, row, col] = (m[1, 0] * u + m[1, 1] * v + m[1, 2]) * scale
                rays[frame, 2, row, col] = (m[2, 0] * u + m[2, 1] * v + m[2, 2]) * scale
                rays[frame, 3, row, col] = dx * scale
                rays[frame, 4, row, col] = dy * scale
                rays[frame, 5, row, col] = dz * scale


def _rays_torch(to_rays: np.ndarray, height: int, width: int, device):
    """The same maps as tensors on ``device`` (training builds them on the GPU)."""
    import torch

    to_rays = torch.from_numpy(to_rays).to(device)
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(3, -1)  # (3, H*W)
    # A plain 2-D matmul: much faster than the batched (F,6,3) @ (3,HW) broadcast.
    rays = (to_rays.reshape(-1, 3) @ pixels).reshape(len(to_rays), 6, -1)
    directions = rays[:, 3:]
    # (d*d).sum().rsqrt() rather than vector_norm: the latter is ~10x slower on this strided view.
    rays.mul_((directions * directions).sum(dim=1, keepdim=True).rsqrt_())
    return rays.reshape(len(to_rays), 6, height, width)


def is_tensor(value) -> bool:
    """A torch tensor, told without importing torch."""
    return type(value).__module__.startswith("torch")


def _as_float64(value) -> np.ndarray:
    if is_tensor(value):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _skew(vectors: np.ndarray) -> np.ndarray:
    """(F,3) -> (F,3,3) cross-product matrices: skew(a) @ b == a x b."""
    x, y, z = np.moveaxis(vectors, -1, 0)
    zero = np.zeros_like(x)
    return np.stack(
        [
            np.stack([zero, -z, y], -1),
            np.stack([z, zero, -x], -1),
            np.stack([-y, x, zero], -1),
        ],
        axis=-2,
    )


def _check_shapes(K: np.ndarray, c2w: np.ndarray, height: int, width: int) -> None:
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise InputError(f"c2w: expected shape (F, 4, 4), got {tuple(c2w.shape)}")
    if K.shape != (len(c2w), 3, 3):
        raise InputError(f"K: expected shape ({len(c2w)}, 3, 3), got {tuple(K.shape)}")
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise InputError(f"{name}: expected a positive integer, got {side!r}")
    if not (np.isfinite(K).all() and np.isfinite(c2w).all()):
        raise InputError("cameras: K and c2w must be finite")
