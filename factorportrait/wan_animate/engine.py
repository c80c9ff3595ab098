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

import html
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import InputError

HUB_ID = "Wan-AI/Wan2.2-Animate-14B-Diffusers"
ENGINE_NAME = "wan-animate"
# The engines every surface offers; $FACTORPORTRAIT_ENGINE picks the default.
ENGINES = ("factorportrait", ENGINE_NAME)
ENGINE_VARIABLE = "FACTORPORTRAIT_ENGINE"
# Written into a folder make_tiny_wan_animate_checkpoint makes and read back by load_wan_animate:
# diffusers ignores extra files at a pipeline folder's top level.
ENGINE_MARKER = "factorportrait_engine.json"

PUBLIC_MODEL_NOTICE = (
    "PUBLIC MODEL Wan2.2-Animate driven by FactorPortrait conditioning - NOT FactorPortrait"
)
TINY_RANDOM_NOTICE = "TINY RANDOM Wan2.2-Animate (public model layout), NOT FactorPortrait"
# What fits a narrow frame: the same facts, shorter.
PUBLIC_MODEL_SHORT = "PUBLIC Wan-Animate, not FactorPortrait"
TINY_RANDOM_SHORT = "TINY RANDOM public Wan-Animate"

# ASSUMPTION: Wan-Animate's own default prompt means "the person in the video is moving"; a
# plain English prompt to the same effect. Guidance is off by default (Wan-Animate's own default
# is 1), so the negative prompt is only encoded when guidance > 1.
DEFAULT_PROMPT = "A person in the video is talking and moving their head."
DEFAULT_NEGATIVE_PROMPT = "blurry, distorted face, static, low quality, artifacts"
PROMPT_MAX_TOKENS = 226  # encode_prompt's default for the Wan pipelines
# The pipeline's own default segment: 77 frames (4k+1), 1 frame carried into the next segment.
SEGMENT_FRAMES = 77
PREVIOUS_SEGMENT_FRAMES = 1

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


def default_engine() -> str:
    """$FACTORPORTRAIT_ENGINE, or factorportrait."""
    return os.environ.get(ENGINE_VARIABLE, "").strip() or ENGINES[0]


def checked_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    return engine


def tiny_wan_animate_pipeline(seed: int = 0):
    """A complete ``WanAnimatePipeline`` of tiny random components: every code path runs on a
    CPU in seconds; the output is noise. The pipeline has no optional components, so the
    tokenizer, text encoder, CLIP image encoder and processor are tiny too."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanAnimatePipeline
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

    from ..checkpoints import tiny_wan_vae

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
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
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
    cpu_offload: bool = False,
    revision: str | None = None,
):
    """A ``WanAnimatePipeline`` from a local folder or a Hub id (safetensors only).

    bf16 on CUDA, float32 on the CPU unless ``dtype`` says otherwise; the VAE stays in float32
    (as diffusers' own example upcasts it). ``cpu_offload`` keeps each component on the CPU
    until it runs (``enable_model_cpu_offload``): the 14B model on a 24 GB card."""
    from diffusers import WanAnimatePipeline

    from ..generation import resolve_device

    target = resolve_device(device)
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
    if local.exists() and marker.is_file():
        pipeline.factorportrait_tiny_random = bool(
            json.loads(marker.read_text()).get("tiny_random")
        )
    else:
        pipeline.factorportrait_tiny_random = False
    if cpu_offload and target.type == "cuda":
        pipeline.enable_model_cpu_offload(device=target)
    else:
        pipeline.to(target)
    return pipeline


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith((".", "/"))


def segment_plan(frames: int) -> dict:
    """How Wan-Animate makes ``frames`` frames: segments of 4k+1 frames, each after the first
    carrying the last PREVIOUS_SEGMENT_FRAMES of the one before. A clip that fits one segment
    is one segment of its own length; a longer one is cut into SEGMENT_FRAMES segments and the
    pipeline pads the driving videos to the last segment's end and trims its output back to
    ``frames``. Returns segment_frame_length, segments and a note for the user."""
    if frames < 1:
        raise InputError(f"frames: expected at least 1, got {frames}")
    if frames <= SEGMENT_FRAMES:
        length = (frames - 1) // 4 * 4 + 1  # the core already asks for 4k+1 frames
        if length != frames:
            raise InputError(f"frames: Wan-Animate needs 4k+1 frames, got {frames}")
        return {"segment_frame_length": length, "segments": 1, "note": None}
    step = SEGMENT_FRAMES - PREVIOUS_SEGMENT_FRAMES
    segments = -(-(frames - PREVIOUS_SEGMENT_FRAMES) // step)
    padded = segments * step + PREVIOUS_SEGMENT_FRAMES
    note = (
        f"Wan-Animate makes {frames} frames as {segments} segments of {SEGMENT_FRAMES} "
        f"(each continuing from the last frame of the one before; the driving videos are "
        f"padded to {padded} frames and the output trimmed back to {frames})"
    )
    return {"segment_frame_length": SEGMENT_FRAMES, "segments": segments, "note": note}


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
    kept on the pipeline: the text encoder (UMT5-XXL, ~11 GB in bf16) is needed only for the
    first request, so a deployment can move it off the GPU afterwards (model CPU offload does
    so by itself)."""
    cache = pipeline.__dict__.setdefault("factorportrait_prompt_cache", {})
    use_negative = guidance > 1
    key = (prompt, DEFAULT_NEGATIVE_PROMPT if use_negative else None)
    if key not in cache:
        with torch.no_grad():
            positive = _encode(pipeline, prompt)
            negative = _encode(pipeline, DEFAULT_NEGATIVE_PROMPT) if use_negative else None
        cache[key] = (positive, negative)
    return cache[key]


def _encode(pipeline, text: str) -> torch.Tensor:
    """The pipeline's own T5 encoding (``_get_t5_prompt_embeds``) without its ``ftfy`` clean-up,
    which only repairs mojibake (our prompts are plain text) and is an optional dependency
    diffusers needs for a text prompt."""
    try:
        import ftfy  # noqa: F401
    except ImportError:
        pass
    else:
        embeds, _ = pipeline.encode_prompt(
            prompt=text,
            do_classifier_free_guidance=False,
            max_sequence_length=PROMPT_MAX_TOKENS,
            device=pipeline._execution_device,
        )
        return embeds
    text = re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()
    tokens = pipeline.tokenizer(
        [text],
        padding="max_length",
        max_length=PROMPT_MAX_TOKENS,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    encoder_device = next(pipeline.text_encoder.parameters()).device
    mask = tokens.attention_mask.to(encoder_device)
    hidden = pipeline.text_encoder(tokens.input_ids.to(encoder_device), mask).last_hidden_state
    length = int(mask.gt(0).sum())
    hidden = hidden.clone()
    hidden[:, length:] = 0  # as the pipeline does: the padding positions are zero
    return hidden.to(device=pipeline._execution_device, dtype=pipeline.text_encoder.dtype)


def generate_wan_animate(
    pipeline, cond, *, steps: int, guidance: float, seed: int, callback=None
) -> np.ndarray:
    """Animate ``cond.reference`` with the skeleton and face videos of ``cond``: (F,H,W,3)
    uint8 of exactly ``cond.frames`` frames, labelled (``label_wan_animate``).

    ``callback`` is diffusers' ``callback_on_step_end``; with several segments it runs
    ``steps`` times per segment (its step index restarts each segment)."""
    from ..generation import GenerationSettings

    GenerationSettings(steps=steps, guidance_scale=guidance, seed=seed).validated()
    pose, face = driving_videos(cond, pipeline.transformer.config.motion_encoder_size)
    plan = segment_plan(cond.frames)
    positive, negative = prompt_embeddings(pipeline, guidance=guidance)
    # A CPU generator gives the same noise on every device: same seed, same frames.
    generator = torch.Generator("cpu").manual_seed(seed)
    output = pipeline(
        image=Image.fromarray(cond.reference),
        pose_video=[Image.fromarray(frame) for frame in pose],
        face_video=[Image.fromarray(frame) for frame in face],
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
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


def banner_text(width: int, *, tiny_random: bool) -> str:
    """The words burnt into a wan-animate frame of this width."""
    if width >= 400:
        return TINY_RANDOM_NOTICE if tiny_random else PUBLIC_MODEL_NOTICE
    return TINY_RANDOM_SHORT if tiny_random else PUBLIC_MODEL_SHORT


def label_wan_animate(frames: np.ndarray, *, tiny_random: bool) -> np.ndarray:
    """Burn the engine's banner into every frame: the top band darkened, the notice written on
    it, scaled to fit the width (the same band as ``generation.label_untrained``)."""
    frames = frames.copy()
    height, width = frames.shape[1:3]
    band = max(12, height // 14)
    text = banner_text(width, tiny_random=tiny_random)
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_width, _), _ = cv2.getTextSize(text, font, 1.0, 1)
    scale = min(band / 30, (width - 8) / text_width)
    for frame in frames:
        frame[:band] = (frame[:band] * 0.25).astype(np.uint8)
        cv2.putText(frame, text, (4, int(band * 0.72)), font, scale, (255, 200, 60), 1, cv2.LINE_AA)
    return frames


def engine_description(pipeline) -> str:
    """One line for logs and the CLI: which engine made a video."""
    kind = "tiny random components" if is_tiny_random(pipeline) else "public weights"
    return f"wan-animate: Wan2.2-Animate ({kind}) driven by FactorPortrait's conditioning"
