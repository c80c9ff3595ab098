"""From a checkpoint and a Conditioning to video files: loading, devices, sampling settings,
seeds, labelling and writing the result.

Shared by the ``generate`` command and the web app, so both load checkpoints the same safe way
(safetensors only), sample with the same defaults and limits, label what an untrained model made
and write their results the same way.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import GENERATION, LIMITS
from ..engines.banner import burn_banner
from ..errors import InputError
from ..io import write_video
from ..planning.guardrails import TrainedRangeWarning, ranges_of_checkpoint, request_warnings
from .pipeline_factorportrait import UNTRAINED_NOTICE, FactorPortraitPipeline

# What ``generate --save-conditioning`` keeps beside a video: the conditions that `evaluate`
# measures the video against (README: Evaluation), not the bulky maps derived from them: cameras,
# head poses, expression, and the reference with its landmarks (identity similarity, and the
# head template fitted to the portrait).
SAVED_CONDITIONING = (
    "K",
    "c2w",
    "head_pose",
    "blendshapes",
    "blendshape_names",
    "fps",
    "mode",
    "reference",
    "source_landmarks",
)


@dataclass(frozen=True)
class GenerationSettings:
    """How to sample a video: denoising steps, classifier-free guidance scale (1 = off) and the
    seed. Defaults from ``config.GENERATION``, limits from ``config.LIMITS``; every surface (CLI,
    web app, Python) builds one and calls ``validated()`` before any work."""

    steps: int = GENERATION.steps
    guidance_scale: float = GENERATION.guidance_scale
    seed: int = GENERATION.seed

    def validated(self) -> GenerationSettings:
        """This, if every value is within its limits; else InputError naming the first bad one."""
        steps, guidance, seed = self.steps, self.guidance_scale, self.seed
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
            raise InputError(f"steps: expected an integer, got {steps!r}")
        if not LIMITS.min_steps <= steps <= LIMITS.max_steps:
            raise InputError(f"steps: {steps} is outside [{LIMITS.min_steps}, {LIMITS.max_steps}]")
        if isinstance(guidance, bool) or not isinstance(guidance, numbers.Real):
            raise InputError(f"guidance: expected a number, got {guidance!r}")
        if not LIMITS.min_guidance_scale <= guidance <= LIMITS.max_guidance_scale:  # NaN too
            raise InputError(
                f"guidance: {guidance} is outside "
                f"[{LIMITS.min_guidance_scale:g}, {LIMITS.max_guidance_scale:g}]"
            )
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise InputError(f"seed: expected an integer, got {seed!r}")
        if not LIMITS.min_seed <= seed <= LIMITS.max_seed:
            raise InputError(f"seed: {seed} is outside [{LIMITS.min_seed}, {LIMITS.max_seed}]")
        return self


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


def generate_frames(
    pipeline: FactorPortraitPipeline,
    conditioning,
    *,
    steps: int = GENERATION.steps,
    guidance: float = GENERATION.guidance_scale,
    seed: int = GENERATION.seed,
    callback=None,
    trajectory=None,
    warn: bool = True,
) -> np.ndarray:
    """Run diffusion; (F, H, W, 3) uint8, labelled as such when the model is untrained.

    A request that leaves what the checkpoint was trained on (its trained_ranges.json, or the
    defaults) gets a ``TrainedRangeWarning`` per finding (``warn=False``: the caller reports
    ``trained_range_warnings`` itself, as the CLI and the web demo do)."""
    GenerationSettings(steps=steps, guidance_scale=guidance, seed=seed).validated()
    if warn:
        for message in trained_range_warnings(pipeline, conditioning, trajectory):
            warnings.warn(message, TrainedRangeWarning, stacklevel=2)
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
    return labelled(frames, output.untrained)


def trained_range_warnings(pipeline, conditioning, trajectory=None) -> list[str]:
    """Sentences for each way a request leaves the ranges the pipeline's checkpoint records
    (``factorportrait.planning.guardrails``)."""
    return request_warnings(conditioning, trajectory, ranges_of_checkpoint(pipeline))


def conditioning_path(video: str | Path) -> Path:
    """Where a video's saved conditioning goes: NAME.mp4 -> NAME.conditioning.npz, the pair
    that `evaluate` reads."""
    video = Path(video)
    return video.with_name(video.name.removesuffix(".mp4") + ".conditioning.npz")


def write_generation(
    video: str | Path, frames: np.ndarray, conditioning, *, save_conditioning: bool = False
) -> dict[str, Path]:
    """Write generated (already labelled) frames to ``video`` (an .mp4) at the conditioning's
    frame rate and, with ``save_conditioning``, its SAVED_CONDITIONING arrays to
    ``conditioning_path(video)``. All or nothing: both are written under hidden names in the
    same folder and renamed into place only once complete (the video last), so a failure leaves
    no file behind. Returns {"video": path} plus {"conditioning": path} when saved."""
    video = Path(video)
    staged_video = video.with_name(f".{video.name}.partial.mp4")
    saved = conditioning_path(video)
    staged_saved = saved.with_name(f".{saved.name}.partial.npz")
    paths = {"video": video}
    try:
        write_video(staged_video, frames, conditioning.fps)
        if save_conditioning:
            np.savez(staged_saved, **conditioning.arrays(SAVED_CONDITIONING))
            staged_saved.replace(saved)
            paths["conditioning"] = saved
        staged_video.replace(video)
    finally:
        staged_video.unlink(missing_ok=True)
        staged_saved.unlink(missing_ok=True)
    return paths


def labelled(frames: np.ndarray, untrained: bool) -> np.ndarray:
    """The frames as anyone gets to see them: with the banner whenever the model that made
    them is not trained (the one rule, for generation and training's validation videos)."""
    return label_untrained(frames) if untrained else frames


def label_untrained(frames: np.ndarray, notice: str = UNTRAINED_NOTICE) -> np.ndarray:
    """Burn a banner into every frame: the video itself says it is not a real result."""
    text = notice if frames.shape[2] >= 400 else "UNTRAINED MODEL"
    return burn_banner(frames, text, (255, 80, 80))
