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

import torch

from ..errors import InputError


def relative_cameras(c2w, reference_c2w) -> torch.Tensor:
    """c2w (F,4,4) -> poses relative to the reference camera (4,4), translation in units of
    the reference camera's distance to the head centre.

    The head centre is the world origin, so that distance is the norm of the reference's
    translation. Cameras equal to the reference come out as the exact identity (no round-off).
    Computed in float64: these are small and feed every pixel.
    """
    c2w = torch.as_tensor(c2w).to(torch.float64)
    reference = torch.as_tensor(reference_c2w).to(device=c2w.device, dtype=torch.float64)
    if reference.shape != (4, 4) or not torch.isfinite(reference).all():
        raise InputError("reference camera: expected one finite 4x4 camera-to-world matrix")
    distance = torch.linalg.vector_norm(reference[:3, 3])
    if distance < 1e-6:
        raise InputError("cameras: the reference camera sits at the head centre (distance 0)")
    relative = torch.linalg.inv(reference) @ c2w
    same = (c2w == reference).flatten(1).all(dim=1)
    relative[same] = torch.eye(4, dtype=relative.dtype, device=relative.device)
    relative[:, :3, 3] /= distance
    return relative


def plucker_rays(K, c2w, height: int, width: int, *, reference_c2w):
    """Plücker ray maps (F, 6, H, W) float32 for K (F,3,3) in pixels and world c2w (F,4,4),
    relative to the camera of the reference image ``reference_c2w`` (4,4).

    Channels 0-2 are the moment ``o x d``, channels 3-5 the unit direction ``d``, both in the
    reference camera's frame. Accepts numpy arrays or torch tensors and returns the same kind
    (tensors stay on their device).
    """
    return_numpy = not torch.is_tensor(c2w)
    device = c2w.device if torch.is_tensor(c2w) else torch.device("cpu")
    K = torch.as_tensor(K).to(device=device, dtype=torch.float64)
    c2w = torch.as_tensor(c2w).to(device=device, dtype=torch.float64)
    _check_shapes(K, c2w, height, width)

    relative = relative_cameras(c2w, reference_c2w)
    # Direction and moment are both linear in the homogeneous pixel p = (u, v, 1):
    #   d ~ M p with M = R K^-1, and o x d = [o]x d ~ [o]x M p,
    # and share the normaliser |M p|. So one (F,6,3) matrix and one matmul give all six channels
    # unnormalised; dividing by the norm of the direction rows finishes the job. This touches the
    # big (F,6,H,W) array only a few times, which is what bounds the speed on a CPU.
    pixel_to_world = relative[:, :3, :3] @ torch.linalg.inv(K)
    to_rays = torch.cat([_skew(relative[:, :3, 3]) @ pixel_to_world, pixel_to_world], dim=1)

    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32) + 0.5,
        torch.arange(width, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(3, -1)  # (3, H*W)
    # A plain 2-D matmul: much faster on CPU than the batched (F,6,3) @ (3,HW) broadcast.
    rays = (to_rays.to(torch.float32).reshape(-1, 3) @ pixels).reshape(len(c2w), 6, -1)
    directions = rays[:, 3:]
    # (d*d).sum().rsqrt() rather than vector_norm: the latter is ~10x slower on this strided view.
    rays.mul_((directions * directions).sum(dim=1, keepdim=True).rsqrt_())
    rays = rays.reshape(len(c2w), 6, height, width)
    return rays.numpy() if return_numpy else rays


def _skew(vectors: torch.Tensor) -> torch.Tensor:
    """(F,3) -> (F,3,3) cross-product matrices: skew(a) @ b == a x b."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        dim=-2,
    )


def _check_shapes(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> None:
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise InputError(f"c2w: expected shape (F, 4, 4), got {tuple(c2w.shape)}")
    if K.shape != (len(c2w), 3, 3):
        raise InputError(f"K: expected shape ({len(c2w)}, 3, 3), got {tuple(K.shape)}")
    for name, side in (("height", height), ("width", width)):
        if isinstance(side, bool) or not isinstance(side, int) or side < 1:
            raise InputError(f"{name}: expected a positive integer, got {side!r}")
    if not (torch.isfinite(K).all() and torch.isfinite(c2w).all()):
        raise InputError("cameras: K and c2w must be finite")
