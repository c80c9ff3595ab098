"""FactorPortraitPipeline: conditions -> video, in diffusers' style.

Components: ``vae`` (Wan2.1's AutoencoderKLWan), ``transformer``
(FactorPortraitTransformer3DModel), ``scheduler`` (flow matching) and ``expression_encoder``.
The text condition is the prompt embedding stored in the transformer, so no text encoder is
needed. Inputs are a :class:`~factorportrait.conditioning.Conditioning` (from the preview core)
or its tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor

from ..config import GENERATION, LATENT
from ..models import (
    FactorPortraitExpressionEncoder,
    FactorPortraitTransformer3DModel,
    aggregate_codes,
    expression_input,
    latent_frames,
    pack_plucker,
)

# Conditions that training drops at random, and that classifier-free guidance therefore drops
# in its unconditional pass ("expression", "reference", "normals"); shared with training.
DEFAULT_GUIDANCE_CONDITIONS = ("expression",)
UNTRAINED_NOTICE = "UNTRAINED MODEL: this output is noise, not a FactorPortrait result"
DROPPABLE = {
    "expression": "expression_codes",
    "reference": "reference_latents",
    "normals": "normal_latents",
}


def drop_conditions(conditions: dict, names) -> dict:
    """The conditions with those named zeroed: what guidance's unconditional pass sees, and
    what training's condition dropout shows the model (the two must agree)."""
    unknown = set(names) - set(DROPPABLE)
    if unknown:
        raise ValueError(f"guidance_conditions: unknown {sorted(unknown)}")
    dropped = dict(conditions)
    for name in names:
        key = DROPPABLE[name]
        if dropped.get(key) is not None:
            dropped[key] = torch.zeros_like(dropped[key])
    return dropped


def batch_from_list(name: str, value, sample_ndim: int):
    """A batch given as a list (diffusers' convention) -> one batched tensor. Items are one
    sample each (``sample_ndim`` dims) or batches of their own (one more leading dim); a tensor
    passes through unchanged, as does None."""
    if not isinstance(value, list | tuple):
        return value
    if not value:
        raise ValueError(f"{name}: an empty list")
    items = [torch.as_tensor(item) for item in value]
    for i, item in enumerate(items[1:], 1):
        if item.shape != items[0].shape:
            raise ValueError(
                f"{name}[{i}] has shape {tuple(item.shape)}, {name}[0] has "
                f"{tuple(items[0].shape)}: a batch's samples must have one shape"
            )
    if items[0].ndim == sample_ndim:
        return torch.stack(items)
    return torch.cat(items)


@dataclass
class FactorPortraitPipelineOutput(BaseOutput):
    frames: np.ndarray | torch.Tensor  # (B, F, H, W, 3) in [0, 1] for "np"; latents for "latent"
    untrained: bool  # True unless the checkpoint says it was trained


class FactorPortraitPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "expression_encoder->transformer->vae"
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKLWan,
        transformer: FactorPortraitTransformer3DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        expression_encoder: FactorPortraitExpressionEncoder,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            transformer=transformer,
            scheduler=scheduler,
            expression_encoder=expression_encoder,
        )
        self.vae_scale_factor_spatial = 2 ** len(vae.config.temperal_downsample)
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    @property
    def untrained(self) -> bool:
        return self.transformer.is_untrained

    # The sampling state, as diffusers pipelines expose it to callbacks. Guidance lives in
    # ``_guidance_scale`` and is read at every step: a callback may change it mid-run (a CFG
    # cutoff sets it to 1, or 0 as diffusers' own cutoff callbacks do, to stop guidance).
    @property
    def guidance_scale(self) -> float:
        return getattr(self, "_guidance_scale", 1.0)

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self.guidance_scale > 1.0 and len(getattr(self, "_guidance_conditions", ())) > 0

    @property
    def num_timesteps(self) -> int:
        return getattr(self, "_num_timesteps", 0)

    @property
    def current_timestep(self):
        return getattr(self, "_current_timestep", None)

    @property
    def interrupt(self) -> bool:
        return getattr(self, "_interrupt", False)

    @property
    def attention_kwargs(self) -> dict | None:
        return getattr(self, "_attention_kwargs", None)

    # ------------------------------------------------------------------------------- inputs
    @staticmethod
    def tensors_from_conditioning(
        conditioning, code_type: str = "image"
    ) -> dict[str, torch.Tensor]:
        """A Conditioning's arrays as a batch of one, in the layouts __call__ takes."""
        reference = (
            torch.from_numpy(conditioning.reference).permute(2, 0, 1)[None].float() / 127.5 - 1
        )
        normals = torch.from_numpy(conditioning.normals).permute(3, 0, 1, 2)[None]
        rays = torch.from_numpy(conditioning.rays)[None]
        fields = {
            name: torch.from_numpy(getattr(conditioning, name))[None]
            for name in ("crops", "blendshapes", "crop_landmarks")
        }
        expression = expression_input(code_type, fields)
        return {"reference": reference, "normals": normals, "rays": rays, "expression": expression}

    def check_inputs(
        self,
        reference,
        normals,
        rays,
        expression,
        guidance_scale,
        callback_on_step_end_tensor_inputs=None,
    ) -> None:
        if rays is None or rays.ndim != 5 or rays.shape[2] != 6:
            raise ValueError(
                f"rays must be (B, F, 6, H, W), got {None if rays is None else tuple(rays.shape)}"
            )
        batch, frames, _, height, width = rays.shape
        if not LATENT.fits(frames):
            raise ValueError(f"the number of frames must be 4k+1 (e.g. 49), got {frames}")
        if height % LATENT.pixels_per_token or width % LATENT.pixels_per_token:
            raise ValueError(
                f"height and width must be multiples of {LATENT.pixels_per_token}, "
                f"got {height}x{width}"
            )
        if reference is None or tuple(reference.shape) != (batch, 3, height, width):
            raise ValueError(
                f"reference must be (B={batch}, 3, {height}, {width}), got "
                f"{None if reference is None else tuple(reference.shape)}"
            )
        if self.transformer.config.use_normals:
            if normals is None:
                raise ValueError("normals are required: this checkpoint uses normal maps")
            if tuple(normals.shape) != (batch, 3, frames, height, width):
                raise ValueError(
                    f"normals must be (B={batch}, 3, F={frames}, {height}, {width}), "
                    f"got {tuple(normals.shape)}"
                )
        if expression is None or tuple(expression.shape[:2]) != (batch, frames):
            raise ValueError(
                f"expression must have (B={batch}, F={frames}) leading dims, got "
                f"{None if expression is None else tuple(expression.shape)}"
            )
        if guidance_scale < 1.0:
            raise ValueError(
                f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale}"
            )
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs: {sorted(unknown)} are not in "
                f"{self._callback_tensor_inputs}"
            )

    # ------------------------------------------------------------------------------ encoding
    def _latent_stats(self, device, dtype):
        mean = torch.tensor(self.vae.config.latents_mean, device=device, dtype=dtype)
        std = torch.tensor(self.vae.config.latents_std, device=device, dtype=dtype)
        return mean.view(1, -1, 1, 1, 1), std.view(1, -1, 1, 1, 1)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1] -> normalised latents (B, 16, k+1, H/8, W/8)."""
        video = video.to(device=self._execution_device, dtype=self.vae.dtype)
        latents = self.vae.encode(video).latent_dist.mode()
        mean, std = self._latent_stats(latents.device, latents.dtype)
        return (latents - mean) / std

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(latents.device, latents.dtype)
        latents = (latents.to(self.vae.dtype) * std.to(self.vae.dtype)) + mean.to(self.vae.dtype)
        return self.vae.decode(latents, return_dict=False)[0]

    # ---------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        conditioning=None,
        *,
        reference: torch.Tensor | list[torch.Tensor] | None = None,
        normals: torch.Tensor | list[torch.Tensor] | None = None,
        rays: torch.Tensor | list[torch.Tensor] | None = None,
        expression: torch.Tensor | list[torch.Tensor] | None = None,
        condition_latents: dict[str, torch.Tensor] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        num_inference_steps: int = GENERATION.steps,
        guidance_scale: float = GENERATION.guidance_scale,
        guidance_conditions: Sequence[str] = DEFAULT_GUIDANCE_CONDITIONS,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> FactorPortraitPipelineOutput | tuple:
        """Generate a video. Either ``conditioning`` (a Conditioning from the preview core, or a
        list of them for a batch) or the tensors: reference (B,3,H,W) in [-1,1], normals
        (B,3,F,H,W) in [-1,1], rays (B,F,6,H,W), expression (B,F,...) as the expression encoder
        takes it. Each may also be a list with one sample per item (without the batch dim, or
        with a batch dim of its own), as diffusers pipelines take batches; ``generator`` may be
        a list with one generator per sample, so that a sample's video does not depend on the
        batch it is in. ``attention_kwargs`` go to the transformer ({"scale": s} scales LoRA
        adapters). Callbacks may read ``num_timesteps``, ``guidance_scale``,
        ``current_timestep``, ``interrupt`` and ``attention_kwargs``, and may set
        ``_guidance_scale`` (guidance is decided at every step) or ``_interrupt``."""
        if isinstance(callback_on_step_end, PipelineCallback | MultiPipelineCallbacks):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        device = self._execution_device
        dtype = self.transformer.dtype
        if condition_latents is not None:
            # Already on the latent grid (training data, validation): no VAE, no encoder.
            if guidance_scale < 1.0:
                raise ValueError(
                    f"guidance_scale must be >= 1 (1 turns guidance off), got {guidance_scale}"
                )
            reference_latents, ray_latents, normal_latents, expression_codes = (
                None
                if condition_latents.get(key) is None
                else condition_latents[key].to(device=device, dtype=dtype)
                for key in (
                    "reference_latents",
                    "ray_latents",
                    "normal_latents",
                    "expression_codes",
                )
            )
            batch, _, t_lat, h_lat, w_lat = ray_latents.shape
        else:
            code_type = self.expression_encoder.config.code_type
            if isinstance(conditioning, list | tuple):
                if not conditioning:
                    raise ValueError("conditioning: an empty list")
                per_sample = [self.tensors_from_conditioning(c, code_type) for c in conditioning]
                reference, normals, rays, expression = (
                    [tensors[k] for tensors in per_sample]
                    for k in ("reference", "normals", "rays", "expression")
                )
            elif conditioning is not None:
                tensors = self.tensors_from_conditioning(conditioning, code_type)
                reference, normals, rays, expression = (
                    tensors[k] for k in ("reference", "normals", "rays", "expression")
                )
            reference = batch_from_list("reference", reference, 3)
            normals = batch_from_list("normals", normals, 4)
            rays = batch_from_list("rays", rays, 4)
            expression = batch_from_list("expression", expression, 4 if code_type == "image" else 2)
            self.check_inputs(
                reference,
                normals,
                rays,
                expression,
                guidance_scale,
                callback_on_step_end_tensor_inputs,
            )
            batch, frames, _, height, width = rays.shape
            t_lat = latent_frames(frames)
            h_lat = height // self.vae_scale_factor_spatial
            w_lat = width // self.vae_scale_factor_spatial
            # Conditions -> the latent grid.
            reference_latents = self.encode_video(reference[:, :, None]).to(dtype)
            normal_latents = (
                self.encode_video(normals).to(dtype)
                if self.transformer.config.use_normals
                else None
            )
            ray_latents = pack_plucker(rays.to(device=device, dtype=torch.float32)).to(dtype)
            codes = self.expression_encoder(expression.to(device))
            expression_codes = aggregate_codes(codes).to(dtype)
        unknown = set(guidance_conditions) - set(DROPPABLE)
        if unknown:
            raise ValueError(f"guidance_conditions: unknown {sorted(unknown)}")
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(
                f"generator: a list of {len(generator)} generators for a batch of {batch} "
                "(give one generator per sample, or a single generator)"
            )
        if prompt_embeds is None:
            prompt_embeds = self.transformer.prompt_embeds.expand(batch, -1, -1)
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)

        shape = (batch, 16, t_lat, h_lat, w_lat)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must be {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=torch.float32)

        self._guidance_scale = guidance_scale
        self._guidance_conditions = tuple(guidance_conditions)
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        conditions = {
            "reference_latents": reference_latents,
            "ray_latents": ray_latents,
            "normal_latents": normal_latents,
            "expression_codes": expression_codes,
            "encoder_hidden_states": prompt_embeds,
        }
        latents = self._denoise(
            latents,
            conditions,
            num_inference_steps,
            dtype,
            callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )
        self._current_timestep = None
        if output_type == "latent":
            video = latents
        else:
            decoded = self.decode_latents(latents)
            video = self.video_processor.postprocess_video(decoded, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video, self.untrained)
        return FactorPortraitPipelineOutput(frames=video, untrained=self.untrained)

    def _denoise(
        self,
        latents: torch.Tensor,
        conditions: dict,
        num_inference_steps: int,
        dtype: torch.dtype,
        callback_on_step_end,
        callback_on_step_end_tensor_inputs: Sequence[str],
    ) -> torch.Tensor:
        """The sampling loop: transformer, guidance, scheduler step and callbacks, from noise
        to clean latents. Kept out of the decorated ``__call__`` so it is a unit of its own
        (mutation testing, TESTING.md, skips decorated functions)."""
        device = latents.device
        guided_conditions = None  # the conditional and unconditional passes in one batch
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    break
                self._current_timestep = t
                # Decided at every step: a callback may have changed _guidance_scale.
                do_guidance = self.do_classifier_free_guidance
                if do_guidance and guided_conditions is None:
                    unconditional = drop_conditions(conditions, self._guidance_conditions)
                    guided_conditions = {
                        key: None if value is None else torch.cat([value, unconditional[key]])
                        for key, value in conditions.items()
                    }
                model_input = torch.cat([latents, latents]) if do_guidance else latents
                # One cache context: diffusers' cache hooks (first-block, PAB, ...) key on it.
                with self.transformer.cache_context("conditional_and_unconditional"):
                    prediction = self.transformer(
                        model_input.to(dtype),
                        t.expand(model_input.shape[0]),
                        attention_kwargs=self.attention_kwargs,
                        return_dict=False,
                        **(guided_conditions if do_guidance else conditions),
                    )[0].float()
                if do_guidance:
                    conditional, unconditional = prediction.chunk(2)
                    prediction = unconditional + self.guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(prediction, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    step_locals = locals()  # (a comprehension would see its own scope)
                    values = {
                        name: step_locals[name] for name in callback_on_step_end_tensor_inputs
                    }
                    outputs = callback_on_step_end(self, i, t, values)
                    latents = outputs.pop("latents", latents)
                progress_bar.update()

        return latents
