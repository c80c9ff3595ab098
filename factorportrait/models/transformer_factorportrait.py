"""The FactorPortrait transformer: Wan2.1's DiT, conditioned channel-wise and per frame.

Built from diffusers' own Wan modules (``WanTransformerBlock``, ``WanRotaryPosEmbed``,
``WanTimeTextImageEmbedding``), with Wan's module names so Wan weights load unchanged:

- Condition fusion (the paper's condition-fusion figure): four channel groups, noise latents
  (16) | reference latent (16) | normal-video latents (16, off in the C2 ablation) | packed
  Plücker rays (24), into a widened patch embedding (72 input channels), over T+1 latent
  frames. Slot 0 is the reference: its latent in the reference group, zeros elsewhere. Slots
  1..T are the frames to generate: noise, normals and rays, zeros in the reference group. The
  transformer reaches the reference through attention (rotary positions run over all T+1
  slots), and returns slots 1..T only. See ``fuse_conditions`` and README (Python API).
- Expression control: per-frame expression codes go through ``expression_controller`` and are
  added to the frame-agnostic timestep embedding of slots 1..T (slot 0 keeps the plain one);
  Wan's ``time_proj`` then turns each frame's sum into that frame's (6, D) AdaLN modulation.
  The controller's last layer starts at zero, and Wan's weights sit on the noise channels only,
  so a fresh model is the base Wan seeing a blank first latent frame.
- Modulation reaches the blocks either per token (B, L, 6, D), the path diffusers' Wan block
  takes as it is (the Wan 2.2 TI2V form), or broadcast per frame (B, T, 6, D) through a
  subclass of the block with the same weights, which never materialises the per-token tensor.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin
from diffusers.models.cache_utils import CacheMixin
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformerBlock,
)
from diffusers.utils import apply_lora_scale
from torch import nn

LATENT_CHANNELS = 16
RAY_CHANNELS = 24  # 6 Plücker channels x 4 frames per latent frame
# How conditions enter the patch embedding; saved in the transformer's config. Checkpoints from
# before it (the reference latent broadcast into every frame's channels) lack the field.
CONDITION_LAYOUT = "reference-frame"
OLD_LAYOUT_MESSAGE = (  # first, and short: the CLI shows a load error's first 160 characters
    "saved in the old broadcast layout (no condition_layout in its config): re-make it with "
    "init-from-wan or make-tiny-checkpoint (none were ever trained)"
)


class ExpressionController(nn.Module):
    """Per-latent-frame expression codes (B, T, E) -> additions to the timestep embedding
    (B, T, D). The output layer is zero-initialised: a fresh controller changes nothing."""

    def __init__(self, code_dim: int, dim: int, hidden_dim: int):
        super().__init__()
        # Kept (issue 27): unlike the LayerNorm that began the encoder's head (on raw features,
        # where an expression x and 3x are proportional and got one code), this one reads the
        # encoder's codes, which its biases and SiLU make far from proportional; it removes
        # only each code's own mean and length (2 of code_dim directions, which the trained
        # encoder can avoid), and keeps the controller's input at unit scale for any encoder.
        # Measured on the toy model's fresh encoder, blendshapes x=0.3 vs 0.9: the codes
        # differ by 21-23% (73-78% with measured statistics), after this norm by 19-21%
        # (62-69%): most of the intensity difference passes.
        self.norm = nn.LayerNorm(code_dim)
        self.proj_in = nn.Linear(code_dim, hidden_dim)
        self.act = nn.SiLU()
        self.proj_out = nn.Linear(hidden_dim, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.proj_out(self.act(self.proj_in(self.norm(codes))))


class PerFrameModulatedWanBlock(WanTransformerBlock):
    """Wan's block with AdaLN modulation given per frame, (B, T, 6, D), and broadcast over
    each frame's tokens instead of expanded to (B, L, 6, D). Same submodules, same weights,
    same arithmetic as the per-token path."""

    def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb):
        batch, tokens, dim = hidden_states.shape
        frames = temb.shape[1]
        per_frame = tokens // frames

        def framed(x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, T, S, D)
            return x.view(batch, frames, per_frame, dim)

        modulation = (self.scale_shift_table.unsqueeze(0) + temb.float()).unsqueeze(3)
        shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
            modulation[:, :, i] for i in range(6)
        )  # each (B, T, 1, D)

        norm = framed(self.norm1(hidden_states.float())) * (1 + scale_msa) + shift_msa
        attn_output = self.attn1(
            norm.view(batch, tokens, dim).type_as(hidden_states), None, None, rotary_emb
        )
        hidden_states = (
            (framed(hidden_states.float()) + framed(attn_output) * gate_msa)
            .view(batch, tokens, dim)
            .type_as(hidden_states)
        )

        norm_hidden_states = self.norm2(hidden_states.float()).type_as(hidden_states)
        hidden_states = hidden_states + self.attn2(
            norm_hidden_states, encoder_hidden_states, None, None
        )

        norm = framed(self.norm3(hidden_states.float())) * (1 + c_scale_msa) + c_shift_msa
        ff_output = self.ffn(norm.view(batch, tokens, dim).type_as(hidden_states))
        hidden_states = (
            (framed(hidden_states.float()) + framed(ff_output.float()) * c_gate_msa)
            .view(batch, tokens, dim)
            .type_as(hidden_states)
        )
        return hidden_states


# diffusers' cache hooks look blocks up by exact class: register the variant like Wan's block.
TransformerBlockRegistry.register(
    PerFrameModulatedWanBlock,
    TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None),
)


class FactorPortraitTransformer3DModel(
    ModelMixin, ConfigMixin, PeftAdapterMixin, CacheMixin, AttentionMixin
):
    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = [
        "patch_embedding",
        "condition_embedder",
        "norm",
        "expression_controller",
    ]
    _no_split_modules = ["WanTransformerBlock", "PerFrameModulatedWanBlock"]
    _keep_in_fp32_modules = [
        "rope",
        "time_embedder",
        "scale_shift_table",
        "norm1",
        "norm2",
        "norm3",
    ]
    _repeated_blocks = ["WanTransformerBlock", "PerFrameModulatedWanBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        rope_max_seq_len: int = 1024,
        prompt_length: int = 512,
        expression_code_dim: int = 1024,  # per latent frame: 4 per-frame codes concatenated
        expression_hidden_dim: int = 1024,
        use_normals: bool = True,  # False: the paper's C2 ablation (no normal maps)
        modulation: Literal["per_token", "per_frame"] = "per_token",
        training_status: str = "untrained",  # "untrained", "wan-initialised" or "trained"
        trained_ranges: dict[str, list[float]] | None = None,  # for the UI's guardrails
        condition_layout: str = CONDITION_LAYOUT,  # the reference in its own latent frame
    ) -> None:
        super().__init__()
        if modulation not in ("per_token", "per_frame"):
            raise ValueError(f"modulation must be 'per_token' or 'per_frame', got {modulation!r}")
        if condition_layout != CONDITION_LAYOUT:
            raise ValueError(
                f"condition_layout must be {CONDITION_LAYOUT!r}, got {condition_layout!r}"
            )
        if patch_size[0] != 1:  # the reference slot must be a token frame of its own
            raise ValueError(f"patch_size: the temporal patch must be 1, got {patch_size[0]}")
        inner_dim = num_attention_heads * attention_head_dim
        self.rope = WanRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(
            self.in_channels_for(use_normals), inner_dim, kernel_size=patch_size, stride=patch_size
        )
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=inner_dim,
            time_freq_dim=freq_dim,
            time_proj_dim=inner_dim * 6,
            text_embed_dim=text_dim,
        )
        block_class = (
            PerFrameModulatedWanBlock if modulation == "per_frame" else WanTransformerBlock
        )
        self.blocks = nn.ModuleList(
            [
                block_class(
                    inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps, None
                )
                for _ in range(num_layers)
            ]
        )
        self.expression_controller = ExpressionController(
            expression_code_dim, inner_dim, expression_hidden_dim
        )
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, LATENT_CHANNELS * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)
        # The text condition is fixed: one prompt embedding saved with the weights, so the demo
        # needs no 11 GB text encoder. A pipeline may still pass its own.
        self.register_buffer("prompt_embeds", torch.zeros(1, prompt_length, text_dim))
        self.gradient_checkpointing = False

    @staticmethod
    def in_channels_for(use_normals: bool) -> int:
        return LATENT_CHANNELS * (3 if use_normals else 2) + RAY_CHANNELS

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loading (pipelines load their transformer through it too), refusing a
        checkpoint saved before the reference had its own latent frame: its weights would
        load, but they were made for another input layout."""
        loaded = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        if "condition_layout" in model.config.get("_use_default_values", ()):
            raise ValueError(f"{OLD_LAYOUT_MESSAGE}: {pretrained_model_name_or_path}")
        return loaded

    @property
    def is_untrained(self) -> bool:
        return self.config.training_status != "trained"

    @apply_lora_scale("attention_kwargs")  # {"scale": s} scales LoRA adapters, as in Wan
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        reference_latents: torch.Tensor,
        ray_latents: torch.Tensor,
        normal_latents: torch.Tensor | None = None,
        expression_codes: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """
        hidden_states: noisy latents (B, 16, T, h, w); timestep: (B,)
        reference_latents: (B, 16, 1, h, w); ray_latents: packed Plücker (B, 24, T, h, w)
        normal_latents: (B, 16, T, h, w), required unless use_normals is False
        expression_codes: (B, T, expression_code_dim) or None (plain Wan modulation)
        encoder_hidden_states: (B, L, text_dim); default: the stored prompt embedding
        attention_kwargs: {"scale": s} scales LoRA adapters (PEFT backend)
        Returns the prediction for the T frames to generate, (B, 16, T, h, w); the reference
        slot is seen, never predicted.
        """
        batch, _, frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_t, post_h, post_w = frames // p_t, height // p_h, width // p_w
        fused = self.fuse_conditions(hidden_states, reference_latents, ray_latents, normal_latents)

        rotary_emb = self.rope(fused)
        tokens = self.patch_embedding(fused).flatten(2).transpose(1, 2).contiguous()

        if encoder_hidden_states is None:
            encoder_hidden_states = self.prompt_embeds.expand(batch, -1, -1).to(tokens.dtype)
        embedder = self.condition_embedder
        sinusoid = embedder.timesteps_proj(timestep)
        time_dtype = next(iter(embedder.time_embedder.parameters())).dtype
        if sinusoid.dtype != time_dtype and time_dtype != torch.int8:
            sinusoid = sinusoid.to(time_dtype)
        temb = embedder.time_embedder(sinusoid).type_as(encoder_hidden_states)  # (B, D)
        if expression_codes is not None:
            if expression_codes.shape[:2] != (batch, post_t):
                raise ValueError(
                    f"expression_codes: expected (B={batch}, T={post_t}, E), "
                    f"got {tuple(expression_codes.shape)}"
                )
            # The per-frame part of the modulation, added before Wan's time_proj; none for the
            # reference slot, which has no expression of its own.
            expression = self.expression_controller(expression_codes.to(temb.dtype))
            temb = temb[:, None] + nn.functional.pad(expression, (0, 0, 1, 0))  # (B, 1+T, D)
        timestep_proj = embedder.time_proj(embedder.act_fn(temb)).unflatten(-1, (6, -1))
        encoder_hidden_states = embedder.text_embedder(encoder_hidden_states)

        per_frame_tokens = post_h * post_w
        if temb.ndim == 3 and self.config.modulation == "per_token":
            timestep_proj = timestep_proj.repeat_interleave(per_frame_tokens, dim=1)  # (B, L, 6, D)
        elif temb.ndim == 2 and self.config.modulation == "per_frame":
            timestep_proj = timestep_proj[:, None]  # one "frame" covering every token
            temb = temb[:, None]

        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(
                    block, tokens, encoder_hidden_states, timestep_proj, rotary_emb
                )
            else:
                tokens = block(tokens, encoder_hidden_states, timestep_proj, rotary_emb)

        # Only slots 1..T are predicted: the reference slot's tokens end here.
        tokens = tokens[:, per_frame_tokens:]
        if expression_codes is not None:
            temb = temb[:, 1:]
        # Output norm, modulated like the blocks (per frame when temb is per frame).
        table = self.scale_shift_table.to(temb.device)
        if temb.ndim == 3:
            modulation = table.unsqueeze(0) + temb.unsqueeze(2)  # (B, T', 2, D)
            shift, scale = modulation[:, :, 0:1], modulation[:, :, 1:2]  # (B, T', 1, D)
            framed = self.norm_out(tokens.float()).reshape(
                batch, temb.shape[1], -1, tokens.shape[-1]
            )
            tokens = (framed * (1 + scale) + shift).view_as(tokens).type_as(tokens)
        else:
            shift, scale = (table + temb.unsqueeze(1)).chunk(2, dim=1)
            tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = self.proj_out(tokens)
        tokens = tokens.reshape(batch, post_t, post_h, post_w, p_t, p_h, p_w, -1)
        output = tokens.permute(0, 7, 1, 4, 2, 5, 3, 6).flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def fuse_conditions(
        self,
        hidden_states: torch.Tensor,
        reference_latents: torch.Tensor,
        ray_latents: torch.Tensor,
        normal_latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The patch embedding's input, (B, C, 1+T, h, w): channel groups noise | reference |
        normals (unless use_normals is False) | rays. Slot 0 holds the reference latent in its
        group and zeros in the others; slots 1..T hold the noisy latents, normals and rays,
        and zeros in the reference group."""
        batch, _, frames, height, width = hidden_states.shape
        if tuple(reference_latents.shape) != (batch, LATENT_CHANNELS, 1, height, width):
            raise ValueError(
                f"reference_latents must be one latent frame, (B={batch}, {LATENT_CHANNELS}, 1, "
                f"{height}, {width}), got {tuple(reference_latents.shape)}"
            )
        groups = [hidden_states]
        if self.config.use_normals:
            if normal_latents is None:
                raise ValueError("normal_latents are required (this model uses normal maps)")
            groups.append(normal_latents)
        groups.append(ray_latents)
        dtype = hidden_states.dtype
        groups = [group.to(dtype) for group in groups]
        reference = reference_latents.to(dtype)

        def zeros(channels: int, slots: int) -> torch.Tensor:
            return hidden_states.new_zeros(batch, channels, slots, height, width)

        reference_slot = [zeros(LATENT_CHANNELS, 1), reference]
        reference_slot += [zeros(group.shape[1], 1) for group in groups[1:]]
        frame_slots = [groups[0], zeros(LATENT_CHANNELS, frames), *groups[1:]]
        return torch.cat([torch.cat(reference_slot, dim=1), torch.cat(frame_slots, dim=1)], dim=2)
