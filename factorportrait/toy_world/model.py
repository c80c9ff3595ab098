"""A small FactorPortrait for the toy world: the real classes (Wan blocks, channel fusion,
the AdaLN expression controller, the expression encoder), a few million parameters."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from ..config import LATENT
from ..models import FactorPortraitExpressionEncoder
from ..pipelines.checkpoints import (
    TINY_WAN_CONFIG,
    _copy_wan_weights,
    _from_wan_config,
    tiny_wan_vae,
)
from ..pipelines.pipeline_factorportrait import FactorPortraitPipeline

# Wider and deeper than the tests' tiny model: about 2.4M parameters in the transformer.
TOY_WAN_CONFIG = {
    **TINY_WAN_CONFIG,
    "num_attention_heads": 4,
    "attention_head_dim": 32,
    "text_dim": 32,
    "freq_dim": 64,
    "ffn_dim": 512,
    "num_layers": 6,
}
CODE_DIM = 32


def toy_vae(seed: int) -> AutoencoderKLWan:
    """The tests' tiny random Wan VAE: a fixed encoder, never trained (EXPERIMENTS.md says why
    errors are measured on its latents). Its latent statistics are set from the world by
    ``set_latent_stats``."""
    return tiny_wan_vae(seed)


@torch.no_grad()
def set_latent_stats(vae: AutoencoderKLWan, videos: torch.Tensor) -> None:
    """Per-channel mean and std of the VAE's latents of ``videos`` (B, 3, F, H, W) in [-1, 1]
    into its config, so the normalised latents the model sees are about unit-scale (a random
    VAE's raw latents are not)."""
    latents = vae.encode(videos).latent_dist.mode()
    mean = latents.mean(dim=(0, 2, 3, 4))
    std = latents.std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
    vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())


def toy_pipeline(
    vae: AutoencoderKLWan,
    seed: int,
    *,
    use_normals: bool = True,
    code_type: str = "blendshapes",
) -> FactorPortraitPipeline:
    """A fresh pipeline around ``vae``: use_normals=False is C2, code_type="landmarks" C3."""
    torch.manual_seed(seed)
    wan = WanTransformer3DModel(in_channels=16, out_channels=16, **TOY_WAN_CONFIG)
    hidden = TOY_WAN_CONFIG["num_attention_heads"] * TOY_WAN_CONFIG["attention_head_dim"]
    transformer = _from_wan_config(
        wan.config,
        prompt_length=8,
        expression_code_dim=LATENT.frames_per_latent * CODE_DIM,
        expression_hidden_dim=hidden,
        use_normals=use_normals,
        training_status="untrained",
    )
    _copy_wan_weights(wan, transformer)
    with torch.no_grad():
        # Learning from scratch: the condition channels start random like the noise channels
        # (init-from-wan zeroes them only to start as plain Wan).
        torch.nn.init.kaiming_uniform_(transformer.patch_embedding.weight, a=5**0.5)
        transformer.prompt_embeds.normal_()
    encoder = FactorPortraitExpressionEncoder(code_type=code_type, code_dim=CODE_DIM)
    return FactorPortraitPipeline(
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        expression_encoder=encoder,
    )
