"""Loading the `wan-animate` engine's model: diffusers' ``WanAnimatePipeline`` from the Hub or
a folder (safetensors only), with Wan-Animate's own scheduler pinned, optional offloading and a
few-step LoRA; the tiny random pipeline every test runs; and what the web app loads at start-up.
Generation with it is in ``engine``.

What a first run on the real weights must confirm is marked ASSUMPTION below.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import InputError
from .. import ENGINE_VARIABLE, FACTORPORTRAIT, GEOMETRY, WAN_ANIMATE, checked_engine

HUB_ID = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
ENGINE_NAME = WAN_ANIMATE
# Written into a folder make_tiny_wan_animate_checkpoint makes and read back by load_wan_animate:
# diffusers ignores extra files at a pipeline folder's top level.
ENGINE_MARKER = "factorportrait_engine.json"


# The original's sampler: Wan2.2 generate.py runs Wan-Animate with --sample_solver unipc (its
# default) and wan/configs/wan_animate_14B.py sample_shift 5.0 (WanAnimate.generate's own
# default solver, dpm++, is only reached by calling it directly); diffusers'
# scripts/convert_wan_to_diffusers.py writes the Hub folder's scheduler as UniPC with flow
# sigmas and flow_shift 5.0 for "Animate". The loader sets exactly this (``wan_scheduler``)
# whatever the folder carries.
SCHEDULER_SHIFT = 5.0
# How the components meet the GPU (load_wan_animate): all resident, model CPU offload, or
# group offloading of the transformer's blocks.
OFFLOAD_MODES = ("none", "model", "group")
LORA_ADAPTER = "distill"
# ASSUMPTION, untested here (never downloaded): a few-step LoRA people pair with Wan2.2-Animate
# (LightX2V's step-distilled Wan 14B I2V LoRA, in Kijai's repackaging), used at 4-8 steps and
# guidance 1. Off by default; README: Engines says how to turn it on.
SUGGESTED_LORA = "Kijai/WanVideo_comfy"
SUGGESTED_LORA_WEIGHT = "Lightx2v/lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"

# The tiny transformer: two layers, the real model's input layout (36 channels: noise latents
# and the reference/previous-segment latents with their mask), a face motion encoder on 64x64
# crops (the real one reads 512x512; the pipeline resizes to whatever the transformer says).
TINY_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=36,
    latent_channels=16,
    out_channels=16,
    text_dim=16,
    freq_dim=256,
    ffn_dim=32,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    image_dim=8,
    rope_max_seq_len=32,
    motion_encoder_channel_sizes={
        str(size): 16 for size in (4, 8, 16, 32, 64, 128, 256, 512, 1024)
    },
    motion_encoder_size=64,
    motion_style_dim=16,
    motion_dim=4,
    motion_encoder_dim=16,
    face_encoder_hidden_dim=16,
    face_encoder_num_heads=2,
    inject_face_latents_blocks=2,
)
TINY_VOCABULARY = 32


def auto_offload(gpu_gib: float | None) -> str:
    """The offloading a card of ``gpu_gib`` GiB (as CUDA reports it) needs for the model in
    bf16 (None: no CUDA GPU, nothing to offload). From the demo's estimate (``cost``) of one
    77-frame window at the engine's default 720x720: everything resident about 65 GiB (an 80
    GB card reports 79 GiB); with model offload the 32 GiB transformer and its activations,
    about 52 GiB (a 64 GB card, not a 48 GB one); below that, group offloading."""
    if gpu_gib is None or gpu_gib >= 72:
        return "none"
    return "model" if gpu_gib >= 60 else "group"


@dataclass(frozen=True)
class StartupPlan:
    """What the web app loads at start-up and which engine its page starts with."""

    wan_animate_checkpoint: str | None
    engine: str
    note: str | None  # one line for the server log, when the app chose for the user


def startup_plan(
    checkpoint: str | None,
    wan_animate_checkpoint: str | None,
    engine: str | None,
    *,
    cuda: bool,
) -> StartupPlan:
    """The engines a start-up with these settings gets. No FactorPortrait checkpoint exists in
    public, so with none configured: on a CUDA GPU the public wan-animate engine is loaded from
    the Hub and chosen; on a CPU nothing can generate, and the page says what is missing. An
    explicit ``engine`` (or $FACTORPORTRAIT_ENGINE) always wins."""
    explicit = engine or os.environ.get(ENGINE_VARIABLE, "").strip() or None
    if explicit is not None:
        checked_engine(explicit)
    note = None
    if checkpoint is None and wan_animate_checkpoint is None and cuda:
        wan_animate_checkpoint = HUB_ID
        note = (
            f"no FactorPortrait checkpoint is configured (none is public yet): loading the "
            f"public {ENGINE_NAME} engine ({HUB_ID}) instead"
        )
    if explicit is None:
        if checkpoint is None and wan_animate_checkpoint:
            explicit = ENGINE_NAME
        elif checkpoint is None:
            # No model at all (a CPU, nothing configured): the geometric engine still makes a
            # real video of the portrait, so Generate works out of the box.
            explicit = GEOMETRY
        else:
            explicit = FACTORPORTRAIT
    return StartupPlan(wan_animate_checkpoint, explicit, note)


def wan_scheduler(config=None):
    """The scheduler Wan-Animate samples with: UniPC over flow-matching sigmas shifted by 5
    (``SCHEDULER_SHIFT``; the original's default solver and shift, and what diffusers'
    conversion writes), built from ``config`` (a loaded scheduler's) where given."""
    from diffusers import UniPCMultistepScheduler

    settings = dict(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=SCHEDULER_SHIFT,
        num_train_timesteps=1000,
    )
    if config is None:
        return UniPCMultistepScheduler(**settings)
    return UniPCMultistepScheduler.from_config(config, **settings)


def tiny_wan_animate_pipeline(seed: int = 0):
    """A complete ``WanAnimatePipeline`` of tiny random components: every code path runs on a
    CPU in seconds; the output is noise. The pipeline has no optional components, so the
    tokenizer, text encoder, CLIP image encoder and processor are tiny too."""
    from diffusers import WanAnimatePipeline
    from diffusers.models import WanAnimateTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        PreTrainedTokenizerFast,
        UMT5Config,
        UMT5EncoderModel,
    )

    from ...pipelines.checkpoints import tiny_wan_vae

    words = ["<pad>", "</s>", "<unk>"] + [f"w{index}" for index in range(TINY_VOCABULARY - 3)]
    word_level = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=word_level, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=TINY_VOCABULARY, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2
        )
    )
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=8,
            projection_dim=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    )
    transformer = WanAnimateTransformer3DModel(**TINY_TRANSFORMER_CONFIG)
    pipeline = WanAnimatePipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=tiny_wan_vae(seed),
        scheduler=wan_scheduler(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        transformer=transformer,
    )
    pipeline.factorportrait_tiny_random = True
    return pipeline


def make_tiny_wan_animate_checkpoint(out: str | Path, seed: int = 0) -> Path:
    """Write the tiny random pipeline in diffusers' ``WanAnimatePipeline`` folder layout (the
    layout of the real Hub weights; safetensors only), with a marker that says it is tiny."""
    out = Path(out)
    tiny_wan_animate_pipeline(seed).save_pretrained(out, safe_serialization=True)
    marker = {"engine": ENGINE_NAME, "tiny_random": True, "seed": seed}
    (out / ENGINE_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return out


def is_tiny_random(pipeline) -> bool:
    """Whether the pipeline's transformer is the tiny random one (its output is noise)."""
    return bool(getattr(pipeline, "factorportrait_tiny_random", False))


def load_wan_animate(
    name_or_path: str | Path,
    device: str = "auto",
    dtype: torch.dtype | None = None,
    *,
    offload: str = "none",
    lora: str | None = None,
    lora_weight_name: str | None = None,
    lora_scale: float = 1.0,
    revision: str | None = None,
):
    """A ``WanAnimatePipeline`` from a local folder or a Hub id (safetensors only).

    bf16 on CUDA, float32 on the CPU unless ``dtype`` says otherwise; the VAE stays in float32
    (as diffusers' own example upcasts it). ``offload`` (README: Engines, memory): ``model``
    keeps each component on the CPU until it runs (``enable_model_cpu_offload``), ``group``
    streams the transformer's blocks to the GPU one group at a time (diffusers' group
    offloading: least GPU memory, slower); both only mean something on CUDA. ``lora``: an
    optional few-step distillation LoRA (a Hub id with ``lora_weight_name``, a folder or a
    .safetensors file) loaded with diffusers' LoRA loader and applied at ``lora_scale``."""
    from diffusers import WanAnimatePipeline

    from ...pipelines.generation import resolve_device

    target = resolve_device(device)
    if offload not in OFFLOAD_MODES:
        raise InputError(f"offload: expected one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    if dtype is None:
        dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    local = Path(name_or_path)
    if local.exists() and not (local / "model_index.json").is_file():
        raise InputError(
            f"checkpoint {name_or_path}: no model_index.json (not a pipeline folder; make one "
            f"with make-tiny-checkpoint --engine wan-animate, or use {HUB_ID})"
        )
    if local.is_dir() and (local / "model_index.json").is_file():
        kind = json.loads((local / "model_index.json").read_text()).get("_class_name")
        if kind != "WanAnimatePipeline":
            raise InputError(
                f"checkpoint {name_or_path}: a {kind} folder, not a WanAnimatePipeline "
                "(a FactorPortrait checkpoint goes with --engine factorportrait)"
            )
    if not local.exists() and not _looks_like_hub_id(str(name_or_path)):
        raise InputError(
            f"checkpoint {name_or_path}: no such folder (and not a Hub id like {HUB_ID})"
        )
    dtypes = {
        "transformer": dtype,
        "text_encoder": dtype,
        "image_encoder": dtype,
        "default": torch.float32,
    }
    try:
        pipeline = WanAnimatePipeline.from_pretrained(
            str(name_or_path), use_safetensors=True, revision=revision, dtype=dtypes
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        where = "" if local.exists() else " (not in the local Hub cache and not downloadable?)"
        raise InputError(f"checkpoint {name_or_path}: cannot load it{where} ({reason})") from None
    marker = local / ENGINE_MARKER
    _pin_scheduler(pipeline)
    if local.exists() and marker.is_file():
        pipeline.factorportrait_tiny_random = bool(
            json.loads(marker.read_text()).get("tiny_random")
        )
    else:
        pipeline.factorportrait_tiny_random = False
    if lora:
        _load_lora(pipeline, lora, lora_weight_name, lora_scale)
    pipeline.factorportrait_lora = lora
    if offload == "model" and target.type == "cuda":
        pipeline.enable_model_cpu_offload(device=target)
    elif offload == "group" and target.type == "cuda":
        # Block by block through CUDA streams (prefetching the next group while one runs);
        # the small components ride along the same way.
        pipeline.enable_group_offload(
            onload_device=target,
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )
    else:
        pipeline.to(target)
    return pipeline


def _pin_scheduler(pipeline) -> None:
    """Sample as the original does (``wan_scheduler``), whatever scheduler the folder carries:
    the Hub folder's is expected to be the same UniPC with flow shift 5 (diffusers' conversion),
    so this changes nothing there; a folder that carries another one is said in the log."""
    import logging

    current = pipeline.scheduler
    config = dict(getattr(current, "config", {}) or {})
    same = (
        type(current).__name__ == "UniPCMultistepScheduler"
        and config.get("prediction_type") == "flow_prediction"
        and config.get("use_flow_sigmas")
        and float(config.get("flow_shift", 0.0)) == SCHEDULER_SHIFT
    )
    if not same:
        logging.getLogger(__name__).info(
            "wan-animate: the folder's scheduler (%s, shift %s) replaced by UniPC with flow "
            "shift %g, as Wan-Animate samples",
            type(current).__name__,
            config.get("flow_shift", config.get("shift")),
            SCHEDULER_SHIFT,
        )
    pipeline.scheduler = wan_scheduler(config or None)


def _load_lora(pipeline, lora: str, weight_name: str | None, scale: float) -> None:
    """diffusers' Wan LoRA loader (it also converts the common non-diffusers Wan LoRA layouts);
    safetensors only. A missing file or a LoRA that fits no layer is a clear error."""
    local = Path(lora)
    if local.is_file():
        source, weight_name = str(local.parent), local.name
    elif local.exists() or _looks_like_hub_id(lora):
        source = lora
    else:
        raise InputError(f"lora {lora}: no such file or folder (and not a Hub id)")
    try:
        pipeline.load_lora_weights(
            source, weight_name=weight_name, adapter_name=LORA_ADAPTER, use_safetensors=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InputError(f"lora {lora}: cannot load it ({reason})") from None
    pipeline.set_adapters([LORA_ADAPTER], [scale])


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith((".", "/"))
