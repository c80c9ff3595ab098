"""Validation videos: what the weights of a step generate for a held-out sample, written so
``evaluate`` reads them as they are (README: Evaluation).

A validation folder holds ``step-N.mp4`` per validation, the sample's ground truth
(``held-out.ground_truth.mp4``: its target latents through the VAE, the best any weights can
reach) and conditioning (``held-out.conditioning.npz``: blendshapes, the reference portrait
and, where the prepared sample records them, cameras and head poses), and ``index.jsonl``, the
manifest ``evaluate --results`` and ``ablate --results`` take.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .objective import expression_codes

HELD_OUT = "held-out"
VALIDATION_FPS = 8
# Conditioning arrays a prepared sample may carry that `evaluate` measures against.
CONDITIONING_KEYS = ("blendshapes", "K", "c2w", "head_pose")


@torch.no_grad()
def generate_sample(
    pipe, sample: dict, steps: int, device, *, guidance: float = 1.0, seed: int = 0
) -> np.ndarray:
    """(F,H,W,3) uint8 frames the pipeline generates for a prepared sample (unbatched), with
    the untrained banner while it applies. Leaves the transformer in eval mode."""
    from ..pipelines.generation import labelled

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
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
    ).frames[0]
    frames = (frames.clip(0, 1) * 255 + 0.5).astype("uint8")
    return labelled(frames, pipe.untrained)


@torch.no_grad()
def decode_to_frames(pipe, latents: torch.Tensor) -> np.ndarray:
    """Normalised latents (16,T,h,w) -> (F,H,W,3) uint8 through the pipeline's VAE."""
    vae = pipe.vae
    decoded = pipe.decode_latents(latents[None].to(vae.device, vae.dtype))[0]
    frames = ((decoded.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def sample_conditioning(pipe, sample: dict, fps: int = VALIDATION_FPS) -> dict[str, np.ndarray]:
    """What ``evaluate`` compares a generated video with, from a prepared sample: its
    blendshapes, the reference portrait (decoded from its latents) and any cameras / head poses
    the sample records."""
    arrays = {k: sample[k].float().cpu().numpy() for k in CONDITIONING_KEYS if k in sample}
    arrays["reference"] = decode_to_frames(pipe, sample["reference_latents"])[0]
    arrays["fps"] = np.array(fps)
    return arrays


def write_held_out(pipe, sample: dict, folder: Path, name: str, fps: int = VALIDATION_FPS):
    """NAME.ground_truth.mp4 (the target latents decoded) and NAME.conditioning.npz."""
    from ..io import write_video

    folder.mkdir(parents=True, exist_ok=True)
    write_video(
        folder / f"{name}.ground_truth.mp4", decode_to_frames(pipe, sample["target_latents"]), fps
    )
    np.savez(folder / f"{name}.conditioning.npz", **sample_conditioning(pipe, sample, fps))


@torch.no_grad()
def validate(pipe, sample: dict, path: Path, steps: int, device) -> None:
    """Generate ``sample`` (a prepared sample, unbatched) with ``steps`` steps, guidance 1 and
    seed 0, write it to ``path`` at 8 fps (with the untrained banner while it applies), the
    sample's ground truth and conditioning beside it once, and the folder's index.jsonl for
    ``evaluate``. Leaves the transformer in eval mode."""
    from ..io import write_video

    frames = generate_sample(pipe, sample, steps, device)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, VALIDATION_FPS)
    if not (folder / f"{HELD_OUT}.conditioning.npz").is_file():
        write_held_out(pipe, sample, folder, HELD_OUT)
    write_index(folder)


def write_index(folder: Path) -> Path:
    """index.jsonl: one line per step-*.mp4, each against the held-out ground truth."""
    lines = [
        json.dumps(
            {
                "name": video.stem,
                "video": video.name,
                "conditioning": f"{HELD_OUT}.conditioning.npz",
                "ground_truth": f"{HELD_OUT}.ground_truth.mp4",
            }
        )
        for video in sorted(folder.glob("step-*.mp4"))
    ]
    index = folder / "index.jsonl"
    index.write_text("\n".join(lines) + "\n")
    return index
