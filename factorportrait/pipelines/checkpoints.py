"""Checkpoints: a tiny random one for tests, and a starting one built from public Wan2.1.

Everything is saved with ``save_pretrained(..., safe_serialization=True)`` and loaded with
``use_safetensors=True``: no deserialisation of executable objects anywhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

from ..config import LATENT
from ..errors import InputError
from ..models import FactorPortraitExpressionEncoder, FactorPortraitTransformer3DModel
from .pipeline_factorportrait import FactorPortraitPipeline

# The Wan transformer's own settings, carried over unchanged into ours.
WAN_KEYS = (
    "patch_size",
    "num_attention_heads",
    "attention_head_dim",
    "text_dim",
    "freq_dim",
    "ffn_dim",
    "num_layers",
    "cross_attn_norm",
    "qk_norm",
    "eps",
    "rope_max_seq_len",
)
# The tiny Wan transformer's size: tests, the tiny checkpoint and the benchmark share it.
TINY_WAN_CONFIG = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "text_dim": 16,
    "freq_dim": 16,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 64,
}
# Wan2.1-T2V-1.3B's transformer, as in its diffusers config (benchmarks and cost estimates
# build random models of this size; init-from-wan reads it from the checkpoint itself).
WAN_13B_CONFIG = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
TINY_BACKBONE = {
    "model_type": "dinov2",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "image_size": 28,
    "patch_size": 14,
}


def weights_digest(module: torch.nn.Module) -> str:
    """A short SHA-256 of a module's weights (names, shapes, values): tells whether cached
    training data was made by the same VAE / expression backbone as a checkpoint.

    The same weights give the same digest on any device and in any floating dtype: floating
    tensors are hashed as their values rounded to bfloat16 (the lowest precision any of our
    paths runs a frozen part in; rounding a bfloat16 copy again changes nothing), so data that
    ``prepare`` made with a bf16 backbone on a GPU is accepted by an fp32 ``train``."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu()
        if tensor.is_floating_point():
            tensor, kind = tensor.to(torch.bfloat16), "float"
        else:
            kind = str(tensor.dtype)  # integer buffers: no dtype is cast to them
        digest.update(f"{name}:{kind}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def component_digests(pipeline) -> dict[str, str]:
    """Digests of the frozen parts whose outputs prepare caches: the VAE (latents) and, when
    there is one, the expression backbone (features). Stored in samples, checked by train."""
    digests = {"vae_digest": weights_digest(pipeline.vae)}
    if pipeline.expression_encoder.backbone is not None:
        digests["backbone_digest"] = weights_digest(pipeline.expression_encoder.backbone)
    return digests


def tiny_wan_transformer(seed: int = 0) -> WanTransformer3DModel:
    """A tiny random Wan2.1 transformer (a stand-in for the real one in tests)."""
    torch.manual_seed(seed)
    return WanTransformer3DModel(in_channels=16, out_channels=16, **TINY_WAN_CONFIG)


def tiny_wan_vae(seed: int = 0) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    return AutoencoderKLWan(
        base_dim=4,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def tiny_pipeline(
    seed: int = 0,
    *,
    code_type: str = "image",
    use_normals: bool = True,
    modulation: str = "per_token",
) -> FactorPortraitPipeline:
    """A complete pipeline with tiny random components (tens of thousands of parameters in
    all): every code path runs on a CPU in seconds; the output is noise."""
    code_dim = 8
    torch.manual_seed(seed)
    encoder = FactorPortraitExpressionEncoder(
        code_type=code_type,
        backbone_config=TINY_BACKBONE if code_type == "image" else None,
        code_dim=code_dim,
        image_size=28,
    )
    wan = tiny_wan_transformer(seed)
    transformer = _from_wan_config(
        wan.config,
        prompt_length=8,
        expression_code_dim=LATENT.frames_per_latent * code_dim,
        expression_hidden_dim=16,
        use_normals=use_normals,
        modulation=modulation,
        training_status="untrained",
    )
    _copy_wan_weights(wan, transformer)
    torch.manual_seed(seed + 1)
    with torch.no_grad():
        transformer.prompt_embeds.normal_()
        # Not zero as a fresh init would be: a random tiny model should exercise every path.
        torch.nn.init.normal_(transformer.expression_controller.proj_out.weight, std=0.5)
        transformer.patch_embedding.weight.normal_(std=0.1)
    return FactorPortraitPipeline(
        vae=tiny_wan_vae(seed),
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        expression_encoder=encoder,
    )


def make_tiny_checkpoint(out: str | Path, seed: int = 0) -> Path:
    out = Path(out)
    tiny_pipeline(seed).save_pretrained(out, safe_serialization=True)
    return out


def init_from_wan(
    wan: str | Path,
    out: str | Path,
    *,
    expression_backbone: str | None = None,
    code_dim: int = 256,
    revision: str | None = None,
    use_normals: bool = True,
    code_type: str = "image",
) -> Path:
    """A starting checkpoint from a diffusers-format Wan2.1 text-to-video checkpoint: Wan's
    transformer and VAE as they are, the new input channels and the expression controller at
    zero (so the model starts as plain Wan, which sees the reference slot as a blank first
    latent frame), and the expression encoder's backbone from a
    transformers checkpoint (DINOv2-class) when given, random otherwise (then say so)."""
    try:
        wan_transformer = WanTransformer3DModel.from_pretrained(
            wan, subfolder="transformer", use_safetensors=True, revision=revision
        )
        vae = AutoencoderKLWan.from_pretrained(
            wan, subfolder="vae", use_safetensors=True, revision=revision
        )
    except (OSError, ValueError) as exc:
        raise InputError(
            f"--wan {wan}: not a loadable diffusers Wan2.1 checkpoint "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    if wan_transformer.config.in_channels != 16 or wan_transformer.config.image_dim is not None:
        raise InputError(
            f"--wan {wan}: expected a text-to-video Wan2.1 (16 input channels, no image embedder)"
        )
    transformer = starting_transformer(
        wan_transformer.config, code_dim=code_dim, use_normals=use_normals
    )
    _copy_wan_weights(wan_transformer, transformer)
    if code_type != "image":  # blendshapes, or landmarks (the C3 ablation): no image backbone
        encoder = FactorPortraitExpressionEncoder(code_type=code_type, code_dim=code_dim)
    elif expression_backbone is not None:
        from transformers import AutoModel

        backbone = AutoModel.from_pretrained(expression_backbone, use_safetensors=True)
        config = backbone.config.to_dict()
        encoder = FactorPortraitExpressionEncoder(
            code_type="image", backbone_config=config, code_dim=code_dim
        )
        encoder.backbone.load_state_dict(backbone.state_dict())
    else:
        encoder = FactorPortraitExpressionEncoder(code_type="image", code_dim=code_dim)
    pipeline = FactorPortraitPipeline(
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        expression_encoder=encoder,
    )
    pipeline.save_pretrained(out, safe_serialization=True)
    return Path(out)


def starting_transformer(
    wan_config, *, code_dim: int = 256, use_normals: bool = True
) -> FactorPortraitTransformer3DModel:
    """A FactorPortrait transformer shaped like init-from-wan makes it from a Wan config
    (random weights until Wan's are copied in). use_normals=False: the C2 ablation."""
    return _from_wan_config(
        wan_config,
        prompt_length=512,
        expression_code_dim=LATENT.frames_per_latent * code_dim,
        expression_hidden_dim=wan_config["num_attention_heads"] * wan_config["attention_head_dim"],
        use_normals=use_normals,
        training_status="wan-initialised",
    )


def _from_wan_config(config, **extra) -> FactorPortraitTransformer3DModel:
    return FactorPortraitTransformer3DModel(**{key: config[key] for key in WAN_KEYS}, **extra)


@torch.no_grad()
def _copy_wan_weights(wan: WanTransformer3DModel, model: FactorPortraitTransformer3DModel) -> None:
    """Every Wan weight into the same-named module; the widened patch embedding gets Wan's
    weights on the noise channels (0-15) and zeros on the new condition channels."""
    state = wan.state_dict()
    patch_weight = state.pop("patch_embedding.weight")
    widened = torch.zeros_like(model.patch_embedding.weight)
    widened[:, : patch_weight.shape[1]] = patch_weight
    state["patch_embedding.weight"] = widened
    missing, unexpected = model.load_state_dict(state, strict=False)
    expected_missing = {"prompt_embeds"} | {
        k for k in model.state_dict() if k.startswith("expression_controller.")
    }
    if unexpected or set(missing) - expected_missing:
        raise InputError(
            f"Wan weights do not fit: missing {sorted(set(missing) - expected_missing)}"
            f", unexpected {sorted(unexpected)}"
        )
    controller_out = model.expression_controller.proj_out
    controller_out.weight.zero_()
    controller_out.bias.zero_()
