"""From a checkpoint and a Conditioning to video frames: loading, devices, seeds, labelling.

Shared by the ``generate`` command and the web app, so both load checkpoints the same safe way
(safetensors only) and both label what an untrained model made.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import InputError
from .pipeline import UNTRAINED_NOTICE, FactorPortraitPipeline


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(
            f"device: {device!r} is not a torch device (try cpu, cuda, cuda:0)"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device: CUDA was asked for but none is available")
    if resolved.type == "cuda" and resolved.index is not None:
        count = torch.cuda.device_count()
        if resolved.index >= count:
            raise InputError(
                f"device: {device} does not exist (this machine has {count} CUDA "
                f"device{'s' if count != 1 else ''})"
            )
    return resolved


def load_pipeline(
    checkpoint: str | Path, *, device: str = "auto", revision: str | None = None
) -> FactorPortraitPipeline:
    """A local folder or a Hub id, safetensors only; bf16 on CUDA, float32 on the CPU."""
    target = resolve_device(device)
    local = Path(checkpoint)
    if local.exists() and not (local / "model_index.json").is_file():
        raise InputError(
            f"checkpoint {checkpoint}: no model_index.json (not a pipeline folder; "
            "make one with make-tiny-checkpoint or init-from-wan)"
        )
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    # The VAE is small and its decoder sensitive: it stays in float32 everywhere.
    dtypes = {"transformer": dtype, "expression_encoder": dtype, "default": torch.float32}
    try:
        pipeline = FactorPortraitPipeline.from_pretrained(
            str(checkpoint), use_safetensors=True, revision=revision, dtype=dtypes
        )
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"checkpoint {checkpoint}: cannot load it ({reason})") from None
    return pipeline.to(target)


def check_generation_settings(steps: int, guidance: float) -> None:
    if steps < 1 or steps > 200:
        raise InputError(f"steps: {steps} is outside [1, 200]")
    if not 1.0 <= guidance <= 20.0:
        raise InputError(f"guidance: {guidance} is outside [1, 20]")


def generate_frames(
    pipeline: FactorPortraitPipeline,
    conditioning,
    *,
    steps: int = 30,
    guidance: float = 3.0,
    seed: int = 0,
    callback=None,
) -> np.ndarray:
    """Run diffusion; (F, H, W, 3) uint8, labelled as such when the model is untrained."""
    check_generation_settings(steps, guidance)
    # A CPU generator gives the same noise on every device: same seed, same frames.
    generator = torch.Generator("cpu").manual_seed(seed)
    output = pipeline(
        conditioning,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="np",
        callback_on_step_end=callback,
    )
    frames = (np.clip(output.frames[0], 0, 1) * 255 + 0.5).astype(np.uint8)
    return label_untrained(frames) if output.untrained else frames


def label_untrained(frames: np.ndarray, notice: str = UNTRAINED_NOTICE) -> np.ndarray:
    """Burn a banner into every frame: the video itself says it is not a real result."""
    frames = frames.copy()
    height, width = frames.shape[1:3]
    band = max(12, height // 14)
    scale = band / 30
    text = notice if width >= 400 else "UNTRAINED MODEL"
    for frame in frames:
        frame[:band] = (frame[:band] * 0.25).astype(np.uint8)
        cv2.putText(
            frame,
            text,
            (4, int(band * 0.72)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale * (0.9 if width >= 400 else 0.8),
            (255, 80, 80),
            1,
            cv2.LINE_AA,
        )
    return frames
