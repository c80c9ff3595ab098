"""Frames -> latent frames: the Wan VAE keeps frame 0 alone and folds every following group of
4 frames into one latent frame (F = 4k+1 frames -> k+1 latent frames). Conditions that do not go
through the VAE are folded the same way, so latent frame i sees exactly the frames it encodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import LATENT

TEMPORAL_FACTOR = LATENT.frames_per_latent
SPATIAL_FACTOR = LATENT.spatial


def latent_frames(frames: int) -> int:
    if not LATENT.fits(frames):
        raise ValueError(f"frames must be 4k+1, got {frames}")
    return LATENT.latent_frames(frames)


def group_frames(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """(..., F, ...) along ``dim`` -> (..., k+1, 4, ...): frame 0 repeated 4 times forms the
    first group, then consecutive groups of 4."""
    frames = x.shape[dim]
    latent_frames(frames)  # validates 4k+1
    first = x.narrow(dim, 0, 1)
    padded = torch.cat(
        [
            first.expand(*[TEMPORAL_FACTOR if d == dim else -1 for d in range(x.ndim)]),
            x.narrow(dim, 1, frames - 1),
        ],
        dim=dim,
    )
    shape = list(padded.shape)
    shape[dim : dim + 1] = [shape[dim] // TEMPORAL_FACTOR, TEMPORAL_FACTOR]
    return padded.reshape(shape)


def pack_plucker(rays: torch.Tensor) -> torch.Tensor:
    """Plücker maps (B, F, 6, H, W) -> (B, 24, k+1, H/8, W/8): 4 frames per latent frame
    stacked on channels (frame-major), then 8x8 average-pooled onto the latent grid."""
    batch, frames, channels, height, width = rays.shape
    grouped = group_frames(rays, dim=1)  # (B, k+1, 4, 6, H, W)
    stacked = grouped.reshape(-1, TEMPORAL_FACTOR * channels, height, width)
    pooled = F.avg_pool2d(stacked, SPATIAL_FACTOR)
    return pooled.reshape(batch, -1, TEMPORAL_FACTOR * channels, *pooled.shape[-2:]).transpose(1, 2)


def aggregate_codes(codes: torch.Tensor) -> torch.Tensor:
    """Per-frame codes (B, F, C) -> per-latent-frame codes (B, k+1, 4C) (first frame alone,
    repeated; then groups of 4 concatenated in time order)."""
    grouped = group_frames(codes, dim=1)  # (B, k+1, 4, C)
    return grouped.flatten(2)
