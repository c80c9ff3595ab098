"""Validation videos: what the weights of a step generate for a held-out sample."""

from __future__ import annotations

from pathlib import Path

import torch

from .objective import expression_codes


@torch.no_grad()
def validate(pipe, sample: dict, path: Path, steps: int, device) -> None:
    """Generate ``sample`` (a prepared sample, unbatched) with ``steps`` steps, guidance 1 and
    seed 0, and write it to ``path`` at 8 fps, with the untrained banner while it applies.
    Leaves the transformer in eval mode."""
    from ..generation import labelled
    from ..io import write_video

    pipe.transformer.eval()
    batch = {k: v[None].to(device) for k, v in sample.items()}
    latents = {
        "reference_latents": batch["reference_latents"],
        "ray_latents": batch["ray_latents"],
        "normal_latents": batch["normal_latents"],
        "expression_codes": expression_codes(pipe.expression_encoder, batch),
    }
    frames = pipe(
        condition_latents=latents,
        num_inference_steps=steps,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    frames = (frames.clip(0, 1) * 255 + 0.5).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, labelled(frames, pipe.untrained), 8)
