"""Models, their step's inputs and pipelines built at a named size with random weights: the one
place both benchmarks build what they time (speed and memory do not depend on training).

Imports only torch, our config and checkpoint shapes; diffusers and our model classes load
where a model is built. Real-size models are built straight on the device (``built_on``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ..config import LATENT
from .sizes import ANIMATE_IMAGE_TOKENS, ANIMATE_TEXT_TOKENS, WAN_CONFIGS, BenchSize


def wan_config_of(size: str) -> dict:
    """Wan's transformer config at a named size (tiny, 1.3b), or that of a checkpoint folder's
    transformer."""
    from ..models import FactorPortraitTransformer3DModel
    from ..pipelines.checkpoints import WAN_KEYS

    if size in WAN_CONFIGS:
        return WAN_CONFIGS[size]
    config = FactorPortraitTransformer3DModel.load_config(str(size), subfolder="transformer")
    return {key: config[key] for key in WAN_KEYS}


@contextlib.contextmanager
def built_on(device: torch.device, dtype: torch.dtype):
    """Modules constructed inside are created directly on ``device`` in ``dtype``: a 14B model
    is initialised in GPU memory as 28 GB of bf16, never as 56 GB of float32 or on the host."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def as_loaded(model: torch.nn.Module) -> torch.nn.Module:
    """What ``from_pretrained(..., torch_dtype=bf16)`` gives: the parts the model class keeps
    in float32 (norms, modulation tables, rope) back in float32 after a bf16 build."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and any(part in keep for part in name.split(".")):
                tensor.data = tensor.data.float()
    return model


def factorportrait_transformer(
    wan_config: dict, modulation: str = "per_token", *, code_dim: int | None = None
):
    """Ours at Wan's size. With ``code_dim`` (per frame) shaped as init-from-wan makes it
    (checkpoints.starting_transformer); without, the expression path at the model class's
    defaults, as ``bench --model`` has always compared it."""
    from ..models import FactorPortraitTransformer3DModel

    shape = {}
    if code_dim is not None:
        shape = dict(
            prompt_length=512,
            expression_code_dim=LATENT.frames_per_latent * code_dim,
            expression_hidden_dim=wan_config["num_attention_heads"]
            * wan_config["attention_head_dim"],
            training_status="wan-initialised",
        )
    return FactorPortraitTransformer3DModel(**wan_config, **shape, modulation=modulation)


def compared_transformers(
    wan_config: dict, *, code_dim: int | None = None
) -> dict[str, Callable[[], torch.nn.Module]]:
    """The three transformers a step is compared across, as builders (each benchmark places
    and casts them its own way): plain Wan, and ours with either modulation path."""
    from diffusers import WanTransformer3DModel

    return {
        "plain": lambda: WanTransformer3DModel(**wan_config),
        "per_token": lambda: factorportrait_transformer(wan_config, "per_token", code_dim=code_dim),
        "per_frame": lambda: factorportrait_transformer(wan_config, "per_frame", code_dim=code_dim),
    }


def latent_grid(frames: int, height: int, width: int) -> tuple[int, int, int]:
    return LATENT.latent_frames(frames), height // LATENT.spatial, width // LATENT.spatial


def transformer_inputs(
    transformer, batch: int, frames: int, height: int, width: int, device, dtype
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Random latents and conditions of one denoising step, as the pipeline passes them."""
    from ..models.transformer_factorportrait import LATENT_CHANNELS, RAY_CHANNELS

    t_lat, h_lat, w_lat = latent_grid(frames, height, width)
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    config = transformer.config
    latents = randn(batch, LATENT_CHANNELS, t_lat, h_lat, w_lat)
    conditions = {
        "reference_latents": randn(batch, LATENT_CHANNELS, 1, h_lat, w_lat),
        "ray_latents": randn(batch, RAY_CHANNELS, t_lat, h_lat, w_lat),
        "normal_latents": randn(batch, LATENT_CHANNELS, t_lat, h_lat, w_lat)
        if config.use_normals
        else None,
        "expression_codes": randn(batch, t_lat, config.expression_code_dim),
        "encoder_hidden_states": randn(batch, config.prompt_length, config.text_dim),
    }
    timestep = torch.full((batch,), 500.0, device=device)
    return latents, timestep, conditions


def plain_wan_inputs(
    text_dim: int, frames: int, height: int, width: int, device, dtype
) -> tuple[torch.Tensor, ...]:
    """Plain Wan's step: the same noise latents and a prompt of the same length as ours."""
    t_lat, h_lat, w_lat = latent_grid(frames, height, width)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, t_lat, h_lat, w_lat, generator=generator).to(device, dtype)
    prompt = torch.randn(1, 512, text_dim, generator=generator)
    return latents, torch.full((1,), 500.0, device=device), prompt.to(device, dtype)


def transformer_step(
    model, frames: int, height: int, width: int, device, dtype
) -> Callable[[], object]:
    """One denoising step of ``model`` (plain Wan or ours; batch 1, no guidance batch) on random
    inputs of a video of that size, ready to time."""
    from ..models import FactorPortraitTransformer3DModel

    if isinstance(model, FactorPortraitTransformer3DModel):
        latents, timestep, conditions = transformer_inputs(
            model, 1, frames, height, width, device, dtype
        )
        return lambda: model(latents, timestep, return_dict=False, **conditions)
    latents, timestep, prompt = plain_wan_inputs(
        model.config.text_dim, frames, height, width, device, dtype
    )
    return lambda: model(latents, timestep, prompt, return_dict=False)


def build_pipeline(size: BenchSize, device: torch.device, dtype: torch.dtype):
    """A complete FactorPortrait pipeline with random weights, dtypes as ``load_pipeline`` gives
    them (transformer and expression encoder in ``dtype``, the VAE in float32)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from ..models import FactorPortraitExpressionEncoder
    from ..pipelines.checkpoints import tiny_pipeline
    from ..pipelines.pipeline_factorportrait import FactorPortraitPipeline

    if size.name == "tiny":
        pipeline = tiny_pipeline(seed=0)
        if dtype != torch.float32:
            as_loaded(pipeline.transformer.to(dtype))
            pipeline.expression_encoder.to(dtype)
        pipeline.to(device)
    else:
        torch.manual_seed(0)
        with built_on(device, dtype):
            transformer = as_loaded(
                factorportrait_transformer(size.wan_config, code_dim=size.code_dim)
            )
            encoder = FactorPortraitExpressionEncoder(code_type="image", code_dim=size.code_dim)
        with built_on(device, torch.float32):
            vae = AutoencoderKLWan()  # the Wan2.1 VAE's own configuration
        pipeline = FactorPortraitPipeline(
            vae=vae,
            transformer=transformer.eval(),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            expression_encoder=encoder.eval(),
        )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generation_inputs(pipeline, frames: int, height: int, width: int) -> dict:
    """Random conditions in the layouts ``FactorPortraitPipeline.__call__`` takes."""
    generator = torch.Generator().manual_seed(0)
    crop = pipeline.expression_encoder.config.image_size
    return {
        "reference": torch.rand(1, 3, height, width, generator=generator) * 2 - 1,
        "normals": torch.rand(1, 3, frames, height, width, generator=generator) * 2 - 1,
        "rays": torch.randn(1, frames, 6, height, width, generator=generator),
        "expression": torch.rand(1, frames, 3, crop, crop, generator=generator),
    }


def animate_inputs(config: dict, frames: int, height: int, width: int, device, dtype) -> dict:
    """Random inputs of one WanAnimateTransformer3DModel step, as WanAnimatePipeline gives
    them for one segment."""
    t_lat, h_lat, w_lat = latent_grid(frames, height, width)
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    face = config["motion_encoder_size"]
    return {
        # the noise latents, then the reference/previous-segment latents and their mask
        "hidden_states": randn(1, config["in_channels"], t_lat + 1, h_lat, w_lat),
        "timestep": torch.full((1,), 500.0, device=device),
        "encoder_hidden_states": randn(1, ANIMATE_TEXT_TOKENS, config["text_dim"]),
        "encoder_hidden_states_image": randn(1, ANIMATE_IMAGE_TOKENS, config["image_dim"]),
        "pose_hidden_states": randn(1, config["latent_channels"], t_lat, h_lat, w_lat),
        "face_pixel_values": randn(1, 3, frames, face, face).clamp(-1, 1),
        "return_dict": False,
    }
