"""What the benchmarks build and at which size: Wan's named sizes, the GPU benchmark's sections,
backends, configs and targets. Mostly a table of constants, read by the other parts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..pipelines.checkpoints import TINY_WAN_CONFIG, WAN_13B_CONFIG

# Wan's transformer at a size named on the command line (``bench --model``, ``bench-gpu``).
WAN_CONFIGS = {"1.3b": WAN_13B_CONFIG, "tiny": TINY_WAN_CONFIG}
SECTIONS = (
    "transformer_step",
    "generation",
    "generation_offload",
    "attention_backends",
    "generation_fastest_attention",
    "wan_animate_step",
    "generation_compiled",
)
# Tried in this order; the fused kernels first. "native" (torch SDPA, the default) is the
# baseline; hub-downloaded kernels are left out (the GPU machine has no network).
ATTENTION_BACKENDS = (
    "native",
    "flash",
    "_flash_3",
    "_native_cudnn",
    "sage",
    "_native_flash",
    "_native_efficient",
)
# Wan2.2-Animate-14B's transformer, as diffusers' conversion script configures it.
WAN_ANIMATE_14B_CONFIG = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 40,
    "attention_head_dim": 128,
    "in_channels": 36,
    "latent_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 13824,
    "num_layers": 40,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "image_dim": 1280,
    "added_kv_proj_dim": 5120,
    "rope_max_seq_len": 1024,
    "motion_encoder_size": 512,
    "motion_style_dim": 512,
    "motion_dim": 20,
    "motion_encoder_dim": 512,
    "face_encoder_hidden_dim": 1024,
    "face_encoder_num_heads": 4,
    "inject_face_latents_blocks": 5,
}
# What WanAnimatePipeline feeds its transformer: a 77-frame segment at 720x1280 (its defaults,
# the engine's SEGMENT_FRAMES), 226 text tokens (the engine's prompt length), 257 CLIP tokens.
ANIMATE_TEXT_TOKENS = 226
ANIMATE_IMAGE_TOKENS = 257
TARGETS = {
    "step_overhead_pct": 3.0,
    "generation_s": 13.0,
    "generation_peak_gb": 24.0,
    "offload_peak_gb": 12.0,
}


@dataclass(frozen=True)
class BenchSize:
    """What is built and at which size: the real 1.3B and 14B, or tiny stand-ins."""

    name: str
    wan_config: dict
    code_dim: int  # per frame; the transformer sees 4 of them per latent frame
    frames: int
    height: int
    width: int
    animate_frames: int
    animate_height: int
    animate_width: int
    # Seconds each section is expected to take (on an H100 for the real size): a section
    # whose estimate exceeds what is left before the deadline is skipped.
    estimates: dict[str, float] = field(default_factory=dict)

    def animate_config(self) -> dict:
        if self.name == "tiny":
            from ..engines.wan_animate.loading import TINY_TRANSFORMER_CONFIG

            return dict(TINY_TRANSFORMER_CONFIG)
        return dict(WAN_ANIMATE_14B_CONFIG)


SIZES = {
    "1.3b": BenchSize(
        name="1.3b",
        wan_config=WAN_CONFIGS["1.3b"],
        code_dim=256,
        frames=49,
        height=512,
        width=512,
        animate_frames=77,
        animate_height=720,
        animate_width=1280,
        estimates={
            "transformer_step": 40,
            "generation": 60,
            "generation_offload": 60,
            "attention_backends": 30,
            "generation_fastest_attention": 45,
            "wan_animate_step": 90,
            "generation_compiled": 150,
        },
    ),
    "tiny": BenchSize(
        name="tiny",
        wan_config=WAN_CONFIGS["tiny"],
        code_dim=8,
        frames=5,
        height=32,
        width=32,
        animate_frames=5,
        animate_height=32,
        animate_width=32,
    ),
}
