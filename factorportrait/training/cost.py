"""What one training step costs, for planning a run: measured where it can run, estimated
where it cannot.

``measure_training_step`` runs a few real optimiser steps of the real architecture (random
weights, the shapes init-from-wan gives: the transformer and a DINOv2-base-sized expression
encoder) on synthetic latents, the way ``train`` does (the same objective module, AdamW, bf16
autocast on CUDA, gradient checkpointing): seconds per step and, on CUDA, peak memory.

``estimate_training_step`` does the same step by arithmetic, for machines that cannot run it:
exact parameter counts from the models built on the meta device (no memory), FLOPs from those
counts and the token count, and bytes per parameter for weights, gradients and AdamW. It is an
estimate and says so: the utilisation and the activation sizes are assumptions.
"""

from __future__ import annotations

import gc
import time
from contextlib import nullcontext

import torch

from ..config import LATENT
from ..models import FactorPortraitExpressionEncoder
from ..pipelines.checkpoints import WAN_13B_CONFIG, starting_transformer, tiny_pipeline
from ..planning.cost import (  # the one cost model's GPU
    CUDA_OVERHEAD_GIB,
    H100_BF16_TFLOPS,
    UTILISATION,
)
from .config import TrainConfig
from .loop import FlowMatchingObjective, frozen_in_trained, select_parameters, training_loss

SIZES = ("tiny", "1.3b")


def build_trainable(size: str, trainable: str, lora_rank: int = 16, *, device="cpu"):
    """(transformer, expression encoder, trained parameters) of a model size, random weights.
    device="meta" builds the shapes only (for counting)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    with torch.device(device):
        if size == "tiny":
            pipe = tiny_pipeline(0)
            transformer, encoder = pipe.transformer, pipe.expression_encoder
        else:
            transformer = starting_transformer(WAN_13B_CONFIG)
            encoder = FactorPortraitExpressionEncoder(code_type="image", code_dim=256)
    params = select_parameters(transformer, encoder, trainable, lora_rank)
    return transformer, encoder, params


def trained_count(transformer, params, trainable: str) -> int:
    """Elements that learn: the parameters' sizes less the masked (frozen) Wan channels of the
    patch embedding."""
    return sum(p.numel() for p in params) - frozen_in_trained(transformer, trainable)


def video_tokens(transformer, frames: int, height: int, width: int) -> tuple[int, int]:
    """(tokens the transformer sees, tokens it predicts) for a clip of ``frames`` frames:
    the reference slot is one latent frame more in, none out."""
    t, h, w = latent_shape(frames, height, width)
    patch = transformer.config.patch_size
    per_frame = (h // patch[1]) * (w // patch[2])
    return (t // patch[0] + 1) * per_frame, t // patch[0] * per_frame


def _matmul_flops(
    transformer, tokens: int, output_tokens: int | None = None
) -> tuple[list[tuple[str, int, bool]], int]:
    """The forward's linear maps as (name, FLOPs, weight trains) and attention's FLOPs: 2 per
    weight per token for every linear map (cross-attention keys and values, LoRA's on them
    included, see the prompt's tokens only; the output projection only the ``output_tokens``
    it predicts, the reference slot's left out; the time/prompt embedders and the expression
    controller run once per sample or latent frame: left out), plus attention's two
    token-by-token products."""
    output_tokens = tokens if output_tokens is None else output_tokens
    text = transformer.config.prompt_length
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    linear = []
    for name, module in transformer.named_modules():
        if not isinstance(module, torch.nn.Linear | torch.nn.Conv3d):
            continue
        if name.startswith(("condition_embedder", "expression_controller")):
            continue
        seen = text if ".attn2.to_k" in name or ".attn2.to_v" in name else tokens
        if name == "proj_out":
            seen = output_tokens
        linear.append((name, 2 * module.weight.numel() * seen, module.weight.requires_grad))
    attention = transformer.config.num_layers * 4 * dim * (tokens * tokens + tokens * text)
    return linear, attention


def forward_flops(transformer, tokens: int, output_tokens: int | None = None) -> int:
    """FLOPs of one transformer forward over ``tokens`` video tokens, reference slot included,
    predicting ``output_tokens`` (see ``_matmul_flops`` and ``video_tokens``)."""
    linear, attention = _matmul_flops(transformer, tokens, output_tokens)
    return sum(flops for _, flops, _ in linear) + attention


def step_flops(
    transformer,
    tokens: int,
    output_tokens: int | None = None,
    *,
    gradient_checkpointing: bool = True,
) -> int:
    """FLOPs of one training step (forward, backward, and with checkpointing the blocks'
    forward again). Backward: every linear map's input gradient (1x its forward) but the patch
    embedding's, whose input is data; the weight gradient (1x) of each map whose weight
    trains (by ``requires_grad``: the patch embedding's whole weight, LoRA's, or all);
    attention's backward is twice its forward (gradients of both operands of both products)."""
    linear, attention = _matmul_flops(transformer, tokens, output_tokens)
    forward = sum(flops for _, flops, _ in linear) + attention
    backward = 2 * attention + sum(
        flops * ((name != "patch_embedding") + trains) for name, flops, trains in linear
    )
    recompute = 0
    if gradient_checkpointing:
        recompute = attention + sum(f for name, f, _ in linear if name.startswith("blocks."))
    return forward + backward + recompute


def vae_parameters(size: str) -> int:
    """Parameters of the VAE a checkpoint of this size carries, counted on the meta device
    (diffusers' default AutoencoderKLWan is Wan2.1's VAE)."""
    from diffusers import AutoencoderKLWan

    from ..pipelines.checkpoints import tiny_wan_vae

    with torch.device("meta"):
        vae = tiny_wan_vae() if size == "tiny" else AutoencoderKLWan()
    return sum(p.numel() for p in vae.parameters())


def latent_shape(frames: int, height: int, width: int) -> tuple[int, int, int]:
    return LATENT.latent_frames(frames), height // LATENT.spatial, width // LATENT.spatial


def synthetic_batch(
    frames: int, height: int, width: int, feature_size: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A prepared sample's tensors (batch of one) with random contents; the expression
    backbone's features are cached by prepare, as in real training."""
    t, h, w = latent_shape(frames, height, width)
    return {
        "target_latents": torch.randn(1, 16, t, h, w, generator=generator),
        "reference_latents": torch.randn(1, 16, 1, h, w, generator=generator),
        "normal_latents": torch.randn(1, 16, t, h, w, generator=generator),
        "ray_latents": torch.randn(1, 24, t, h, w, generator=generator),
        "expression_features": torch.randn(1, frames, feature_size, generator=generator),
        "blendshapes": torch.rand(1, frames, 52, generator=generator),
        "crop_landmarks": torch.rand(1, frames, 478, 2, generator=generator),
    }


def measure_training_step(
    size: str,
    frames: int,
    height: int,
    width: int,
    trainable: str = "full",
    *,
    steps: int = 3,
    device: torch.device | str = "cpu",
    lora_rank: int = 16,
    gradient_checkpointing: bool = True,
) -> dict:
    """Seconds per optimiser step (after one warm-up step) and CUDA peak memory."""
    device = torch.device(device)
    transformer, encoder, params = build_trainable(size, trainable, lora_rank)
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    objective = FlowMatchingObjective(transformer, encoder).to(device).train()
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)  # as train has it
    generator = torch.Generator().manual_seed(0)
    features = encoder.head[0].normalized_shape[0]
    batch = {
        k: v.to(device)
        for k, v in synthetic_batch(frames, height, width, features, generator).items()
    }
    config = TrainConfig()
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    if cuda:  # a previous measurement's model must not count in this one's peak
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with autocast:
            loss = training_loss(objective, batch, config, generator)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss.detach()))
    return {
        "seconds": times[1:],
        "warmup_s": times[0],
        "losses": losses,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "parameters": sum(p.numel() for p in objective.parameters()),
        "trainable": trained_count(transformer, params, trainable),
        "device": str(device),
    }


def estimate_training_step(
    size: str,
    frames: int,
    height: int,
    width: int,
    trainable: str = "full",
    *,
    lora_rank: int = 16,
    gradient_checkpointing: bool = True,
    peak_tflops: float = H100_BF16_TFLOPS,
    utilisation: float = UTILISATION,
) -> dict:
    """FLOPs, time and GPU memory of one step at batch 1, by arithmetic (see module doc)."""
    transformer, encoder, params = build_trainable(size, trainable, lora_rank, device="meta")
    tokens, output_tokens = video_tokens(transformer, frames, height, width)
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    layers = transformer.config.num_layers

    # (The expression backbone's features are cached by prepare: no per-step cost.)
    flops = step_flops(
        transformer, tokens, output_tokens, gradient_checkpointing=gradient_checkpointing
    )

    total = sum(p.numel() for p in transformer.parameters()) + sum(
        p.numel() for p in encoder.parameters()
    )
    trained = trained_count(transformer, params, trainable)
    gib = 2**30
    # fp32 master weights (autocast), and the VAE train loads for its validation videos.
    weights = 4 * (total + vae_parameters(size)) / gib
    # (Gradients and AdamW's moments are whole tensors, the masked channels' included.)
    gradients_and_adam = (4 + 8) * sum(p.numel() for p in params) / gib
    # Activations: the fp32 residual stream kept at each block boundary; one block's bf16
    # internals live during its recompute (q, k, v, attention out, norms, modulated inputs,
    # the FFN's hidden layer before and after its activation).
    ffn = transformer.config.ffn_dim
    block_internals = tokens * (16 * dim + 4 * ffn) * 2 / gib
    if gradient_checkpointing:
        activations = layers * tokens * dim * 4 / gib + block_internals
    else:
        activations = layers * (tokens * dim * 4 / gib + block_internals)
    memory = weights + gradients_and_adam + activations + CUDA_OVERHEAD_GIB
    return {
        "size": size,
        "trainable_mode": trainable,
        "tokens": tokens,
        "parameters": total,
        "trainable": trained,
        "step_tflop": flops / 1e12,
        "seconds": flops / (peak_tflops * 1e12 * utilisation),
        "gpu_gib": memory,
        "gpu_gib_parts": {
            "weights": weights,
            "gradients_and_adam": gradients_and_adam,
            "activations": activations,
            "overhead": CUDA_OVERHEAD_GIB,
        },
        "assumptions": f"{peak_tflops:g} TFLOPS bf16 peak at {utilisation:.0%} utilisation, "
        "fp32 master weights, AdamW, batch 1",
    }
