"""One cost model for planning: the GPU it assumes and what a generation costs on it.

Training's step estimate (``training.cost``) and the web demo's generation estimate share the
GPU constants here. The generation estimate counts a transformer forward the way
``training.cost.forward_flops`` does (2 FLOPs per weight per token for the linear maps, plus
attention's two token-by-token products) but from the architecture's sizes alone, without
building a model; for the 1.3B model the two agree within a percent.
"""

from __future__ import annotations

from ..config import LATENT
from ..pipelines.checkpoints import WAN_13B_CONFIG

# The GPU every estimate assumes (stated wherever an estimate is printed).
H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 SXM
UTILISATION = 0.4
CUDA_OVERHEAD_GIB = 1.5  # context, allocator slack, workspaces

# The transformer the demo runs: Wan2.1 1.3B's sizes, and its weight count in round figures.
WAN_13B_PARAMETERS = 1.3e9
WAN_13B_LAYERS = WAN_13B_CONFIG["num_layers"]
WAN_13B_DIM = WAN_13B_CONFIG["num_attention_heads"] * WAN_13B_CONFIG["attention_head_dim"]
PIXELS_PER_TOKEN = LATENT.pixels_per_token  # 8x spatial VAE compression x a 2x2 patch
# Seconds outside the transformer per generation: conditioning, VAE encode/decode, loading.
GENERATION_OVERHEAD_S = 8.0
# Per token and layer, the bf16 activations kept alive while a forward runs (q, k, v, outputs,
# norms, the FFN's hidden layer...), in units of the model width.
ACTIVATION_WIDTHS = 40
VAE_AND_WORKSPACE_GIB = 4.0


def gpu_seconds(
    flops: float, *, peak_tflops: float = H100_BF16_TFLOPS, utilisation: float = UTILISATION
) -> float:
    """Seconds for ``flops`` on the assumed GPU at the assumed utilisation."""
    return flops / (peak_tflops * 1e12 * utilisation)


def generation_tokens(frames: int, height: int, width: int) -> int:
    """Video tokens the transformer attends over: one latent frame per 4 frames (the first
    alone), plus the reference image's own latent frame, each (H/16) x (W/16) tokens."""
    latent_frames = LATENT.latent_frames(frames)
    return (latent_frames + 1) * (height // PIXELS_PER_TOKEN) * (width // PIXELS_PER_TOKEN)


def forward_flops_estimate(
    tokens: int,
    *,
    parameters: float = WAN_13B_PARAMETERS,
    layers: int = WAN_13B_LAYERS,
    dim: int = WAN_13B_DIM,
) -> float:
    """FLOPs of one transformer forward: 2 x weights x tokens for the linear maps plus
    4 x tokens^2 x width x layers for attention's two products."""
    return 2 * parameters * tokens + 4 * tokens**2 * dim * layers


def estimate_generation(
    frames: int,
    height: int,
    width: int,
    steps: int,
    guidance: float,
    *,
    parameters: float = WAN_13B_PARAMETERS,
    layers: int = WAN_13B_LAYERS,
    dim: int = WAN_13B_DIM,
) -> dict[str, float]:
    """Seconds and GPU memory (GiB) of one generation in bf16 on the assumed GPU; guidance
    above 1 runs the transformer twice per step. Good to a factor of two, no better."""
    tokens = generation_tokens(frames, height, width)
    flops = forward_flops_estimate(tokens, parameters=parameters, layers=layers, dim=dim)
    passes = steps * (2 if guidance > 1.0 else 1)
    seconds = gpu_seconds(flops * passes) + GENERATION_OVERHEAD_S
    gib = 2**30
    weights = parameters * 2 / gib
    activations = tokens * dim * 2 * ACTIVATION_WIDTHS / gib
    return {"seconds": seconds, "gpu_gib": weights + activations + VAE_AND_WORKSPACE_GIB}


# Wan2.2-Animate-14B (the wan-animate engine): Wan 14B's transformer sizes, and the weights of
# the components that load beside it (UMT5-XXL text encoder, CLIP ViT-H image encoder, VAE),
# all in bf16. Its token layout matches ours (the reference image's latent frame first).
# The "14B" transformer with its face adapter and motion encoder: 17.27e9 weights at the real
# config (counted on the meta device by bench-gpu), 32 GiB in bf16.
WAN_ANIMATE_PARAMETERS = 17.27e9
WAN_ANIMATE_LAYERS = 40
WAN_ANIMATE_DIM = 5120
WAN_ANIMATE_OTHER_WEIGHTS_GIB = 11.4 + 1.2 + 0.5  # text encoder, image encoder, VAE (fp32)


def estimate_wan_animate(
    segment_frames: int, segments: int, height: int, width: int, steps: int, guidance: float
) -> dict[str, float]:
    """``estimate_generation`` for Wan2.2-Animate-14B: a clip is made as ``segments`` segments
    of ``segment_frames`` (each a full denoising run; ``wan_animate.engine.segment_plan``).
    ``gpu_gib``: everything resident; ``gpu_gib_offload``: with model CPU offload (the largest
    component and its activations)."""
    one = estimate_generation(
        segment_frames,
        height,
        width,
        steps,
        guidance,
        parameters=WAN_ANIMATE_PARAMETERS,
        layers=WAN_ANIMATE_LAYERS,
        dim=WAN_ANIMATE_DIM,
    )
    transformer_seconds = one["seconds"] - GENERATION_OVERHEAD_S
    return {
        "seconds": segments * transformer_seconds + GENERATION_OVERHEAD_S,
        "gpu_gib": one["gpu_gib"] + WAN_ANIMATE_OTHER_WEIGHTS_GIB,
        "gpu_gib_offload": one["gpu_gib"],
    }


# The longest ZeroGPU call the demo asks for.
ZEROGPU_MAX_S = 300


def zerogpu_duration(frames: int, steps: int) -> int:
    """Seconds to ask ZeroGPU for FactorPortrait's 1.3B model: grows with frames x steps,
    clamped to what a call may use."""
    return int(min(ZEROGPU_MAX_S, max(30, 20 + 0.05 * frames * steps)))
