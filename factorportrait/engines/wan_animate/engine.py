"""The `wan-animate` engine: the public Wan2.2-Animate model (diffusers' ``WanAnimatePipeline``)
driven by FactorPortrait's conditioning (README: Engines).

Our core gives the model its two driving videos: a skeleton of the posed template head projected
through each frame's camera (``skeleton.pose_video``) and the face crops of the driving clip
(``faces.face_video``); the portrait, framed as the output, is the reference image. Everything
this engine makes is labelled in the video as the public model driven by our conditioning, never
as FactorPortrait, and as "tiny random" when the transformer is the tiny random one.

Its model is loaded by ``loading``; this module generates with it and labels the result, and
``WanAnimateEngine`` is the engine's side of the one interface (``engines.protocol``).

What a first run on the real weights must confirm is marked ASSUMPTION below.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .. import WAN_ANIMATE, engine_info
from ..protocol import EngineRuntime, diffusion_callback
from .loading import is_tiny_random, load_wan_animate, make_tiny_wan_animate_checkpoint
from .windows import PREVIOUS_SEGMENT_FRAMES, segment_plan, wan_animate_request

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


def status_markdown(checkpoint: str | None, device: str | None, cuda: bool = True) -> str:
    """What the page says the engine has loaded (one line)."""
    if checkpoint is None and not cuda:
        return (
            "**wan-animate:** not loaded: the public Wan2.2-Animate-14B model needs a CUDA GPU "
            "(24 GB or more, with offloading) and this machine has none. Its previews (the "
            "skeleton and face videos) work; `python app.py --tiny` runs every path with tiny "
            "random models."
        )
    if checkpoint is None:
        return (
            "**wan-animate:** not loaded (set `FACTORPORTRAIT_WAN_ANIMATE_CHECKPOINT`, see "
            "README: Engines); its previews work."
        )
    return (
        f"**wan-animate:** `{checkpoint}` (the public Wan2.2-Animate model driven by "
        f"FactorPortrait conditioning, NOT FactorPortrait). **Device:** {device}."
    )


class WanAnimateEngine(EngineRuntime):
    """The public Wan2.2-Animate model behind the one engine interface."""

    pipeline_class = "WanAnimatePipeline"
    info = engine_info(WAN_ANIMATE)

    def request(self, settings):
        return wan_animate_request(settings)

    def estimate(self, frames, size, steps, guidance):
        from ...planning.cost import ZEROGPU_MAX_S, estimate_wan_animate

        plan = segment_plan(frames)
        cost = estimate_wan_animate(
            plan["segment_frame_length"], plan["segments"], size, size, steps, guidance
        )
        # Its 40 GB of weights move onto the GPU at the start of every ZeroGPU call.
        zerogpu_s = int(min(ZEROGPU_MAX_S, max(60, 30 + 1.5 * cost["seconds"])))
        return {**cost, "zerogpu_s": zerogpu_s}

    def total_units(self, frames, steps):
        return steps * segment_plan(frames)["segments"]

    def load(self, checkpoint, *, device="auto", **options):
        return load_wan_animate(checkpoint, device, **options)

    def status_markdown(self, model, checkpoint, *, cuda):
        if model is None:
            return status_markdown(None, None, cuda=cuda)
        return status_markdown(checkpoint, str(model.device))

    def describe(self, model):
        return f"{engine_description(model)} (not FactorPortrait); labelled in the video"

    def notices(self, model, cond=None):
        notes = []
        if is_tiny_random(model):
            notes.append(
                "this is a tiny RANDOM Wan2.2-Animate pipeline: the video is noise and is "
                "labelled so"
            )
        if cond is not None and (plan := segment_plan(cond.frames)["note"]):
            notes.append(plan)
        return notes

    def device(self, model):
        return str(model._execution_device)

    def make_tiny_checkpoint(self, folder, seed=0):
        make_tiny_wan_animate_checkpoint(folder, seed=seed)
        return (
            "tiny RANDOM Wan2.2-Animate pipeline (diffusers WanAnimatePipeline layout, "
            "untrained, output is noise)"
        )

    def warnings(self, cond, trajectory, model):
        return what_it_cannot_honour(cond.mode)

    def preview_videos(self, cond, model):
        # The face crops at the side the loaded model reads (512 for the real weights).
        size = 512 if model is None else int(model.transformer.config.motion_encoder_size)
        pose, face = driving_videos(cond, size)
        return {"pose": pose, "face": face}

    def control_video(self, cond):
        from .skeleton import pose_video

        return np.asarray(pose_video(cond))

    def generate(self, model, cond, *, steps, guidance, seed, report=None, should_stop=None):
        total = self.total_units(cond.frames, steps)
        if report is not None:
            report(0, total, "encoding")
        callback = diffusion_callback(total, steps, report, should_stop)
        return generate_wan_animate(
            model, cond, steps=steps, guidance=guidance, seed=seed, callback=callback
        )
