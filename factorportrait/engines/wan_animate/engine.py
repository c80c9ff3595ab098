"""The `wan-animate` engine: the public Wan2.2-Animate model (diffusers' ``WanAnimatePipeline``)
driven by FactorPortrait's conditioning (README: Engines).

Our core gives the model its two driving videos: a skeleton of the posed template head projected
through each frame's camera (``skeleton.pose_video``) and the face crops of the driving clip
(``faces.face_video``); the portrait, framed as the output, is the reference image. Everything
this engine makes is labelled in the video as the public model driven by our conditioning, never
as FactorPortrait, and as "tiny random" when the transformer is the tiny random one.

What a first run on the real weights must confirm is marked ASSUMPTION below.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import InputError
from .. import ENGINE_VARIABLE, FACTORPORTRAIT, GEOMETRY, WAN_ANIMATE, checked_engine
from .windows import (  # noqa: F401 (re-exported: the engine's windows)
    MIN_FRAMES,
    PREVIOUS_SEGMENT_FRAMES,
    SEGMENT_FRAMES,
    check_frames,
    segment_plan,
    wan_animate_request,
)

HUB_ID = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
ENGINE_NAME = WAN_ANIMATE
# Written into a folder make_tiny_wan_animate_checkpoint makes and read back by load_wan_animate:
# diffusers ignores extra files at a pipeline folder's top level.
ENGINE_MARKER = "factorportrait_engine.json"

PUBLIC_MODEL_NOTICE = (
    "PUBLIC MODEL Wan2.2-Animate driven by FactorPortrait conditioning - NOT FactorPortrait"
)
TINY_RANDOM_NOTICE = "TINY RANDOM Wan2.2-Animate (public model layout), NOT FactorPortrait"
# What fits a narrow frame: the same facts, shorter.
PUBLIC_MODEL_SHORT = "PUBLIC Wan-Animate, not FactorPortrait"
TINY_RANDOM_SHORT = "TINY RANDOM Wan-Animate, NOT FactorPortrait"

# ASSUMPTION: Wan-Animate's own default prompt means "the person in the video is moving"; a
# plain English prompt to the same effect. Guidance is off by default (Wan-Animate's own default
# is 1: engines.REGISTRY), so the negative prompt is only encoded when guidance > 1.
DEFAULT_PROMPT = "A person in the video is talking and moving their head."
DEFAULT_NEGATIVE_PROMPT = "blurry, distorted face, static, low quality, artifacts"
# The text context the model was trained with: Wan2.2 wan/configs/shared_config.py text_len =
# 512 (its T5 output zero-padded to 512 by the model), diffusers' WanAnimatePipeline.__call__
# max_sequence_length = 512. There is no attention mask over the padding, so the count matters.
PROMPT_MAX_TOKENS = 512
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


def driving_videos(cond, face_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The two videos our core gives Wan-Animate: the projected skeleton (F,H,W,3) and the face
    crops (F,S,S,3), uint8, S = ``face_size``."""
    from .faces import face_video
    from .skeleton import pose_video

    pose = np.asarray(pose_video(cond))
    # The side the model's face motion encoder reads (512 for the real weights).
    face = np.asarray(face_video(cond, size=face_size))
    if len(pose) != cond.frames or len(face) != cond.frames:
        raise ValueError(
            f"driving videos of {len(pose)} and {len(face)} frames for {cond.frames} output frames"
        )
    return pose, face


def prompt_embeddings(pipeline, *, guidance: float, prompt: str = DEFAULT_PROMPT):
    """(prompt_embeds, negative_prompt_embeds or None), encoded once per pipeline and prompt and
    kept on the pipeline. The text encoder (UMT5-XXL, ~11 GB in bf16) is needed for the first
    request only: once it has run, a resident copy on the GPU goes back to the CPU
    (``release_text_encoder``), and a later new prompt is encoded there."""
    cache = pipeline.__dict__.setdefault("factorportrait_prompt_cache", {})
    use_negative = guidance > 1
    key = (prompt, DEFAULT_NEGATIVE_PROMPT if use_negative else None)
    if key not in cache:
        with torch.no_grad():
            positive = _encode(pipeline, prompt)
            negative = _encode(pipeline, DEFAULT_NEGATIVE_PROMPT) if use_negative else None
        cache[key] = (positive, negative)
        release_text_encoder(pipeline)
    return cache[key]


def _encode(pipeline, text: str) -> torch.Tensor:
    """The pipeline's own prompt encoding (T5 with its ftfy clean-up, padding zeroed), run where
    the text encoder sits, the result moved to where the transformer runs."""
    encoder = pipeline.text_encoder
    offloaded = getattr(encoder, "_hf_hook", None) is not None  # accelerate moves it itself
    device = pipeline._execution_device if offloaded else next(encoder.parameters()).device
    embeds, _ = pipeline.encode_prompt(
        prompt=text,
        do_classifier_free_guidance=False,
        max_sequence_length=PROMPT_MAX_TOKENS,
        device=device,
    )
    return embeds.to(pipeline._execution_device)


def release_text_encoder(pipeline) -> bool:
    """Move a text encoder resident on a GPU to the CPU (with offloading, accelerate's hooks
    already do). True when it moved."""
    encoder = pipeline.text_encoder
    if getattr(encoder, "_hf_hook", None) is not None:
        return False
    if next(encoder.parameters()).device.type != "cuda":
        return False
    encoder.to("cpu")
    torch.cuda.empty_cache()
    return True


def generate_wan_animate(
    pipeline, cond, *, steps: int, guidance: float, seed: int, callback=None
) -> np.ndarray:
    """Animate ``cond.reference`` with the skeleton and face videos of ``cond``: (F,H,W,3)
    uint8 of exactly ``cond.frames`` frames, labelled (``label_wan_animate``).

    ``callback`` is diffusers' ``callback_on_step_end``; with several segments it runs
    ``steps`` times per segment (its step index restarts each segment)."""
    from ...pipelines.generation import GenerationSettings

    GenerationSettings(steps=steps, guidance_scale=guidance, seed=seed).validated()
    plan = segment_plan(cond.frames)  # refuses a count it cannot make before any work
    pose, face = driving_videos(cond, pipeline.transformer.config.motion_encoder_size)
    positive, negative = prompt_embeddings(pipeline, guidance=guidance)
    # A CPU generator gives the same noise on every device: same seed, same frames.
    generator = torch.Generator("cpu").manual_seed(seed)
    output = pipeline(
        image=Image.fromarray(cond.reference),
        pose_video=[Image.fromarray(frame) for frame in pose],
        face_video=[Image.fromarray(frame) for frame in face],
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        max_sequence_length=PROMPT_MAX_TOKENS,
        height=cond.height,
        width=cond.width,
        segment_frame_length=plan["segment_frame_length"],
        prev_segment_conditioning_frames=PREVIOUS_SEGMENT_FRAMES,
        num_inference_steps=steps,
        guidance_scale=guidance,
        mode="animate",
        generator=generator,
        output_type="np",
        callback_on_step_end=callback,
    )
    frames = (np.clip(output.frames[0], 0, 1) * 255 + 0.5).astype(np.uint8)
    return label_wan_animate(frames, tiny_random=is_tiny_random(pipeline))


def what_it_cannot_honour(mode) -> list[str]:
    """What the public model cannot do of ``mode`` (README: Engines), in plain words. It was
    trained on videos from still cameras, without camera control, so its skeleton is drawn as
    the portrait's own, still camera films it (``skeleton``): a camera's rotation about the head
    reaches it only as the head turning on a still body. Shown with every wan-animate preview
    and result of that mode, instead of FactorPortrait's trained-range warnings (they describe
    a FactorPortrait checkpoint, not this model)."""
    from ...modes import Mode

    mode = Mode(mode)
    notes = []
    if mode.moving_camera:
        notes.append(
            "wan-animate was not trained for camera control: the camera path reaches it only "
            "as the head turning, nodding and tilting on a still body; the background, the "
            "body and the framing stay as in the portrait, and the camera's distance and zoom "
            "are not followed."
        )
    elif mode.novel_view:
        notes.append(
            "wan-animate was not trained for camera control: the chosen view reaches it only "
            "as the head turned by that much on a still body; the background, the body and "
            "the framing stay as in the portrait, and the view's distance is not followed."
        )
    if not mode.drives_head:
        notes.append(
            "camera-only with wan-animate: every face crop is the portrait's own face, so the "
            "expression stays as in the photo."
        )
    return notes


def banner_text(width: int, *, tiny_random: bool) -> str:
    """The words burnt into a wan-animate frame of this width."""
    if width >= 400:
        return TINY_RANDOM_NOTICE if tiny_random else PUBLIC_MODEL_NOTICE
    return TINY_RANDOM_SHORT if tiny_random else PUBLIC_MODEL_SHORT


def label_wan_animate(frames: np.ndarray, *, tiny_random: bool) -> np.ndarray:
    """Burn the engine's banner into every frame: the top band darkened, the notice written on
    it on one line or two, scaled to fit (the same band as ``generation.label_untrained``)."""
    from ...pipelines.generation import burn_banner

    text = banner_text(frames.shape[2], tiny_random=tiny_random)
    return burn_banner(frames, text, (255, 200, 60))


def engine_description(pipeline) -> str:
    """One line for logs and the CLI: which engine made a video."""
    kind = "tiny random components" if is_tiny_random(pipeline) else "public weights"
    return f"wan-animate: Wan2.2-Animate ({kind}) driven by FactorPortrait's conditioning"
