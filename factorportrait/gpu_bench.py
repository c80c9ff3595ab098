"""The GPU benchmark: ``python -m factorportrait bench-gpu --device cuda --json F``.

Random weights at real size, built straight on the device in bf16 (no multi-GB host copies),
measured in one process in about eight minutes on one H100/H200 with no network:

- ``transformer_step``: a FactorPortrait 1.3B transformer step (both modulation paths) against
  plain Wan 1.3B, interleaved, at 49x512x512 (target overhead <= 3%);
- ``generation``: a full guided generation (50 steps, expression guidance: two passes per step),
  tensors in, decoded frames out: wall time and peak GPU memory (target <= 13 s, <= 24 GB);
- ``generation_offload``: the same with model CPU offload (target peak <= 12 GB);
- ``attention_backends``: a guided step with each attention backend diffusers offers
  (``set_attention_backend``), in order; one that is not installed is recorded as unavailable;
- ``generation_fastest_attention``: the generation with the fastest backend that worked;
- ``wan_animate_step``: a step of the public-weights engine's transformer, diffusers'
  ``WanAnimateTransformer3DModel`` at the Wan2.2-Animate-14B config (77x720x1280);
- ``generation_compiled``: the generation with the transformer's blocks under ``torch.compile``.

Every section runs under its own try/except (an out-of-memory or a compile error is recorded
and the rest still run) and is skipped, with the reason, when its estimated cost would overrun
the global deadline. ``--model tiny`` runs the same code end to end on a CPU in seconds.

Imports only torch, diffusers, transformers, numpy and our model and pipeline modules: the GPU
machine has no mediapipe, gradio, trimesh or plotly.
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from .config import GENERATION, LATENT, LIMITS
from .errors import InputError
from .pipelines.checkpoints import TINY_WAN_CONFIG, WAN_13B_CONFIG

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
GB = 1e9
GIB = 2**30


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
            from .engines.wan_animate.engine import TINY_TRANSFORMER_CONFIG

            return dict(TINY_TRANSFORMER_CONFIG)
        return dict(WAN_ANIMATE_14B_CONFIG)


SIZES = {
    "1.3b": BenchSize(
        name="1.3b",
        wan_config=WAN_13B_CONFIG,
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
        wan_config=TINY_WAN_CONFIG,
        code_dim=8,
        frames=5,
        height=32,
        width=32,
        animate_frames=5,
        animate_height=32,
        animate_width=32,
    ),
}


class Deadline:
    """A point in time the whole run must end by; sections ask it before they start and loops
    ask it between repeats."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def remaining(self) -> float:
        return self.end - time.perf_counter()

    def passed(self) -> bool:
        return self.remaining() <= 0


class SectionSkipped(Exception):
    """Raised by a section that cannot run here; its message is the recorded reason."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"device: {device!r} is not a torch device (try cpu, cuda)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device: CUDA was asked for but none is available")
    return resolved


@contextlib.contextmanager
def built_on(device: torch.device, dtype: torch.dtype):
    """Modules constructed inside are created directly on ``device`` in ``dtype``: a 14B model
    is initialised in GPU memory as 28 GB of bf16, never as 56 GB of float32 or on the host."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def as_loaded(model: torch.nn.Module) -> torch.nn.Module:
    """What ``from_pretrained(..., torch_dtype=bf16)`` gives: the parts the model class keeps
    in float32 (norms, modulation tables, rope) back in float32 after a bf16 build."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and any(part in keep for part in name.split(".")):
                tensor.data = tensor.data.float()
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def _free_memory(device: torch.device) -> None:
    """Give the models of a finished section back to the GPU (a CPU run skips the slow full
    garbage collection: its memory is not measured)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _time_calls(
    fn: Callable[[], object], repeats: int, device: torch.device, deadline: Deadline
) -> list[float]:
    """Seconds per call, synchronised; at least one call, fewer than ``repeats`` once the
    deadline has passed."""
    times = []
    for _ in range(repeats):
        if times and deadline.passed():
            break
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _timing(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "best_s": min(times), "repeats": len(times)}


def _memory(peak: int | None) -> dict:
    if peak is None:
        return {"peak_gib": None, "peak_gb": None, "peak_note": "GPU memory is measured on CUDA"}
    return {"peak_gib": peak / GIB, "peak_gb": peak / GB}


def _error_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


# ------------------------------------------------------------------------------ model inputs
def _latent_grid(frames: int, height: int, width: int) -> tuple[int, int, int]:
    return LATENT.latent_frames(frames), height // LATENT.spatial, width // LATENT.spatial


def transformer_inputs(
    transformer, batch: int, frames: int, height: int, width: int, device, dtype
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Random latents and conditions of one denoising step, as the pipeline passes them."""
    from .models.transformer_factorportrait import LATENT_CHANNELS, RAY_CHANNELS

    t_lat, h_lat, w_lat = _latent_grid(frames, height, width)
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    config = transformer.config
    latents = randn(batch, LATENT_CHANNELS, t_lat, h_lat, w_lat)
    conditions = {
        "reference_latents": randn(batch, LATENT_CHANNELS, 1, h_lat, w_lat),
        "ray_latents": randn(batch, RAY_CHANNELS, t_lat, h_lat, w_lat),
        "normal_latents": randn(batch, LATENT_CHANNELS, t_lat, h_lat, w_lat)
        if config.use_normals
        else None,
        "expression_codes": randn(batch, t_lat, config.expression_code_dim),
        "encoder_hidden_states": randn(batch, config.prompt_length, config.text_dim),
    }
    timestep = torch.full((batch,), 500.0, device=device)
    return latents, timestep, conditions


def plain_wan_inputs(size: BenchSize, device, dtype) -> tuple[torch.Tensor, ...]:
    """Plain Wan's step: the same noise latents and a prompt of the same length as ours."""
    t_lat, h_lat, w_lat = _latent_grid(size.frames, size.height, size.width)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, t_lat, h_lat, w_lat, generator=generator).to(device, dtype)
    prompt = torch.randn(1, 512, size.wan_config["text_dim"], generator=generator)
    return latents, torch.full((1,), 500.0, device=device), prompt.to(device, dtype)


def factorportrait_transformer(size: BenchSize, modulation: str = "per_token"):
    """Shaped as init-from-wan makes it (checkpoints.starting_transformer), either modulation."""
    from .models import FactorPortraitTransformer3DModel

    wan = size.wan_config
    return FactorPortraitTransformer3DModel(
        **wan,
        prompt_length=512,
        expression_code_dim=LATENT.frames_per_latent * size.code_dim,
        expression_hidden_dim=wan["num_attention_heads"] * wan["attention_head_dim"],
        modulation=modulation,
        training_status="wan-initialised",
    )


def build_pipeline(size: BenchSize, device: torch.device, dtype: torch.dtype):
    """A complete FactorPortrait pipeline with random weights, dtypes as ``load_pipeline`` gives
    them (transformer and expression encoder in ``dtype``, the VAE in float32)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from .models import FactorPortraitExpressionEncoder
    from .pipelines.checkpoints import tiny_pipeline
    from .pipelines.pipeline_factorportrait import FactorPortraitPipeline

    if size.name == "tiny":
        pipeline = tiny_pipeline(seed=0)
        if dtype != torch.float32:
            as_loaded(pipeline.transformer.to(dtype))
            pipeline.expression_encoder.to(dtype)
        pipeline.to(device)
    else:
        torch.manual_seed(0)
        with built_on(device, dtype):
            transformer = as_loaded(factorportrait_transformer(size))
            encoder = FactorPortraitExpressionEncoder(code_type="image", code_dim=size.code_dim)
        with built_on(device, torch.float32):
            vae = AutoencoderKLWan()  # the Wan2.1 VAE's own configuration
        pipeline = FactorPortraitPipeline(
            vae=vae,
            transformer=transformer.eval(),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
            expression_encoder=encoder.eval(),
        )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def generation_inputs(pipeline, frames: int, height: int, width: int) -> dict:
    """Random conditions in the layouts ``FactorPortraitPipeline.__call__`` takes."""
    generator = torch.Generator().manual_seed(0)
    crop = pipeline.expression_encoder.config.image_size
    return {
        "reference": torch.rand(1, 3, height, width, generator=generator) * 2 - 1,
        "normals": torch.rand(1, 3, frames, height, width, generator=generator) * 2 - 1,
        "rays": torch.randn(1, frames, 6, height, width, generator=generator),
        "expression": torch.rand(1, frames, 3, crop, crop, generator=generator),
    }


# ---------------------------------------------------------------------------------- sections
@dataclass
class BenchState:
    """What the sections share: the settings, and the pipeline the generation sections reuse."""

    size: BenchSize
    device: torch.device
    dtype: torch.dtype
    steps: int
    guidance: float
    repeats: int
    compile_backend: str
    deadline: Deadline
    pipeline: object = None
    inputs: dict | None = None
    pipeline_error: str | None = None
    fastest_backend: str | None = None


def _step_section(state: BenchState) -> dict:
    """Plain Wan against both FactorPortrait modulation paths, one forward per step (no
    guidance batch), measured round-robin so drifting clocks hit all three alike."""
    from diffusers import WanTransformer3DModel

    size, device, dtype = state.size, state.device, state.dtype
    torch.manual_seed(0)
    builders = {
        "plain Wan": lambda: WanTransformer3DModel(**size.wan_config),
        "FactorPortrait per_token": lambda: factorportrait_transformer(size, "per_token"),
        "FactorPortrait per_frame": lambda: factorportrait_transformer(size, "per_frame"),
    }
    steps, rows = {}, {}
    for name, build in builders.items():
        start = time.perf_counter()
        with built_on(device, dtype):
            model = as_loaded(build().eval())
        build_s = time.perf_counter() - start
        if name == "plain Wan":
            latents, timestep, prompt = plain_wan_inputs(size, device, dtype)
            steps[name] = lambda m=model, x=latents, t=timestep, p=prompt: m(
                x, t, p, return_dict=False
            )
        else:
            latents, timestep, conditions = transformer_inputs(
                model, 1, size.frames, size.height, size.width, device, dtype
            )
            steps[name] = lambda m=model, x=latents, t=timestep, c=conditions: m(
                x, t, return_dict=False, **c
            )
        with torch.no_grad():
            _reset_peak(device)
            before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
            steps[name]()  # warm-up
            peak = _peak_bytes(device)
        rows[name] = {
            "build_s": build_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "step_activation_gib": None if peak is None else (peak - before) / GIB,
            "times": [],
        }
    with torch.no_grad():
        for _ in range(state.repeats):
            for name, step in steps.items():
                rows[name]["times"] += _time_calls(step, 1, device, state.deadline)
            if state.deadline.passed():
                break
    base = statistics.median(rows["plain Wan"]["times"])
    models = {}
    for name, row in rows.items():
        times = row.pop("times")
        models[name] = {**row, **_timing(times)}
        models[name]["vs_plain_wan"] = statistics.median(times) / base
        models[name]["overhead_pct"] = 100 * (statistics.median(times) / base - 1)
    return {
        "what": f"one transformer forward, batch 1, {size.frames}x{size.height}x{size.width}, "
        f"{dtype}; ours also sees the reference's latent frame",
        "models": models,
    }


def _ensure_pipeline(state: BenchState):
    if state.pipeline is None:
        if state.pipeline_error is not None:
            raise SectionSkipped(f"needs the pipeline, which failed: {state.pipeline_error}")
        try:
            state.pipeline = build_pipeline(state.size, state.device, state.dtype)
            state.inputs = generation_inputs(
                state.pipeline, state.size.frames, state.size.height, state.size.width
            )
        except Exception as exc:
            state.pipeline_error = _error_text(exc)
            raise
    return state.pipeline


def run_generation(state: BenchState, *, steps: int) -> dict:
    """One generation, tensors in, decoded frames out; per-step times from the step callback,
    which also stops the run at the deadline (then ``steps_done`` < ``steps``)."""
    pipeline, device = state.pipeline, state.device
    marks = []

    def on_step_end(pipe, index, timestep, values):
        _sync(device)
        marks.append(time.perf_counter())
        if state.deadline.passed():
            pipe._interrupt = True
        return {}

    _free_memory(device)
    _reset_peak(device)
    start = time.perf_counter()
    output = pipeline(
        **state.inputs,
        num_inference_steps=steps,
        guidance_scale=state.guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step_end,
    )
    _sync(device)
    wall = time.perf_counter() - start
    frames = output.frames[0]
    if frames.shape[0] != state.size.frames:
        raise RuntimeError(f"expected {state.size.frames} frames, got {frames.shape[0]}")
    gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    result = {
        "wall_s": wall,
        "steps": steps,
        "steps_done": len(marks),
        "step_median_s": statistics.median(gaps) if gaps else None,
        **_memory(_peak_bytes(device)),
    }
    if len(marks) < steps:
        result["interrupted"] = "the deadline passed: fewer steps than asked"
    return result


def _generation_section(state: BenchState) -> dict:
    start = time.perf_counter()
    _ensure_pipeline(state)
    build_s = time.perf_counter() - start
    warmup = run_generation(state, steps=1)
    timed = run_generation(state, steps=state.steps)
    return {
        "what": f"{state.steps}-step generation, guidance {state.guidance:g} "
        f"({'two transformer passes' if state.guidance > 1 else 'one pass'} per step), "
        f"{state.size.frames}x{state.size.height}x{state.size.width}, tensors in, decoded "
        "frames out",
        "build_s": build_s,
        "warmup_1_step_s": warmup["wall_s"],
        **timed,
    }


def _offload_section(state: BenchState) -> dict:
    if state.device.type != "cuda":
        raise SectionSkipped("model CPU offload needs a CUDA device")
    pipeline = _ensure_pipeline(state)
    pipeline.enable_model_cpu_offload(device=state.device)
    try:
        return {
            "what": "as `generation`, with enable_model_cpu_offload",
            **run_generation(state, steps=state.steps),
        }
    finally:
        pipeline.remove_all_hooks()
        pipeline.to(state.device)


def _set_backend(transformer, backend: str) -> None:
    transformer.set_attention_backend(backend)


def _restore_default_backend(transformer) -> None:
    # set_attention_backend also sets diffusers' process-wide active backend: put it back.
    transformer.set_attention_backend("native")
    transformer.reset_attention_backend()


def _attention_section(state: BenchState) -> dict:
    pipeline = _ensure_pipeline(state)
    transformer, device = pipeline.transformer, state.device
    size = state.size
    latents, timestep, conditions = transformer_inputs(
        transformer, 2, size.frames, size.height, size.width, device, state.dtype
    )

    def step():
        transformer(latents, timestep, return_dict=False, **conditions)

    backends = {}
    try:
        for backend in ATTENTION_BACKENDS:
            try:
                _set_backend(transformer, backend)
            except (RuntimeError, ImportError, ValueError) as exc:
                backends[backend] = {"status": "unavailable", "reason": _error_text(exc)}
                continue
            try:
                with torch.no_grad():
                    step()  # warm-up, and the check that it runs at all here
                    times = _time_calls(step, state.repeats, device, state.deadline)
                backends[backend] = {"status": "ok", **_timing(times)}
            except Exception as exc:  # a backend that fails is a finding
                backends[backend] = {"status": "failed", "reason": _error_text(exc)}
                _free_memory(device)
            if state.deadline.passed():
                break
    finally:
        _restore_default_backend(transformer)
    for backend in ATTENTION_BACKENDS:
        backends.setdefault(backend, {"status": "skipped", "reason": "the deadline passed"})
    working = {name: row["median_s"] for name, row in backends.items() if row["status"] == "ok"}
    if not working:
        raise RuntimeError("no attention backend ran")
    state.fastest_backend = min(working, key=working.get)
    baseline = working.get("native")
    for row in backends.values():
        if row["status"] == "ok" and baseline:
            row["vs_native"] = row["median_s"] / baseline
    return {
        "what": "one guided transformer step (batch 2) per backend, "
        f"{size.frames}x{size.height}x{size.width}",
        "fastest": state.fastest_backend,
        "worked": sorted(working, key=working.get),
        "backends": backends,
    }


def _fastest_attention_section(state: BenchState) -> dict:
    if state.fastest_backend is None:
        raise SectionSkipped("needs the attention_backends section, which did not finish")
    pipeline = _ensure_pipeline(state)
    _set_backend(pipeline.transformer, state.fastest_backend)
    try:
        timed = run_generation(state, steps=state.steps)
    finally:
        _restore_default_backend(pipeline.transformer)
    return {"what": "as `generation`", "backend": state.fastest_backend, **timed}


def _compiled_section(state: BenchState) -> dict:
    """As ``generation`` (default attention backend: one change per variant), the
    transformer's blocks under torch.compile."""
    pipeline = _ensure_pipeline(state)
    start = time.perf_counter()
    # Regional compilation: each block compiled once and reused (diffusers' advice for DiTs:
    # minutes faster to compile than the whole model, as fast to run).
    pipeline.transformer.compile_repeated_blocks(backend=state.compile_backend)
    warmup = run_generation(state, steps=1)  # compiles, at the shapes the timed run uses
    compile_s = time.perf_counter() - start
    timed = run_generation(state, steps=state.steps)
    return {
        "what": "as `generation`, the transformer's blocks under torch.compile",
        "compile_backend": state.compile_backend,
        "compile_and_warmup_s": compile_s,
        "warmup_1_step_s": warmup["wall_s"],
        **timed,
    }


def animate_inputs(config: dict, frames: int, height: int, width: int, device, dtype) -> dict:
    """Random inputs of one WanAnimateTransformer3DModel step, as WanAnimatePipeline gives
    them for one segment."""
    t_lat, h_lat, w_lat = _latent_grid(frames, height, width)
    generator = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=generator).to(device, dtype)

    face = config["motion_encoder_size"]
    return {
        # the noise latents, then the reference/previous-segment latents and their mask
        "hidden_states": randn(1, config["in_channels"], t_lat + 1, h_lat, w_lat),
        "timestep": torch.full((1,), 500.0, device=device),
        "encoder_hidden_states": randn(1, ANIMATE_TEXT_TOKENS, config["text_dim"]),
        "encoder_hidden_states_image": randn(1, ANIMATE_IMAGE_TOKENS, config["image_dim"]),
        "pose_hidden_states": randn(1, config["latent_channels"], t_lat, h_lat, w_lat),
        "face_pixel_values": randn(1, 3, frames, face, face).clamp(-1, 1),
        "return_dict": False,
    }


def _animate_section(state: BenchState) -> dict:
    """One step of the 14B WanAnimateTransformer3DModel as WanAnimatePipeline calls it (no
    guidance by default: batch 1; the motion encoder reads the face video at every step)."""
    from diffusers.models import WanAnimateTransformer3DModel

    size, device, dtype = state.size, state.device, state.dtype
    config = size.animate_config()
    frames, height, width = size.animate_frames, size.animate_height, size.animate_width
    torch.manual_seed(0)
    start = time.perf_counter()
    with built_on(device, dtype):
        model = as_loaded(WanAnimateTransformer3DModel(**config).eval())
    build_s = time.perf_counter() - start
    inputs = animate_inputs(config, frames, height, width, device, dtype)
    with torch.no_grad():
        _reset_peak(device)
        warmup = _time_calls(lambda: model(**inputs), 1, device, state.deadline)
        times = _time_calls(lambda: model(**inputs), min(2, state.repeats), device, state.deadline)
    _, channels, latent_frames, h_lat, w_lat = inputs["hidden_states"].shape
    return {
        "what": f"one WanAnimateTransformer3DModel forward, batch 1, {frames}x{height}x{width} "
        f"({latent_frames * (h_lat // 2) * (w_lat // 2)} tokens), {dtype}",
        "config": "tiny" if size.name == "tiny" else "Wan2.2-Animate-14B",
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_s": build_s,
        "warmup_s": warmup[0],
        **_timing(times),
        **_memory(_peak_bytes(device)),
    }


SECTION_RUNNERS: dict[str, Callable[[BenchState], dict]] = {
    "transformer_step": _step_section,
    "generation": _generation_section,
    "generation_offload": _offload_section,
    "attention_backends": _attention_section,
    "generation_fastest_attention": _fastest_attention_section,
    "wan_animate_step": _animate_section,
    "generation_compiled": _compiled_section,
}


def run_section(name: str, state: BenchState, estimate_s: float) -> dict:
    """One section: skipped if it would overrun the deadline, its failure recorded (never
    raised), its wall time always."""
    remaining = state.deadline.remaining()
    if remaining < estimate_s:
        return {
            "status": "skipped",
            "reason": f"would overrun the deadline: about {estimate_s:.0f} s needed, "
            f"{max(0.0, remaining):.0f} s left",
        }
    start = time.perf_counter()
    try:
        entry = {"status": "ok", **SECTION_RUNNERS[name](state)}
    except SectionSkipped as exc:
        entry = {"status": "skipped", "reason": str(exc)}
    except torch.cuda.OutOfMemoryError as exc:
        entry = {"status": "failed", "reason": f"out of memory: {_error_text(exc)}"}
    except Exception as exc:  # recorded; the other sections still run
        entry = {"status": "failed", "reason": _error_text(exc)}
    entry["section_s"] = time.perf_counter() - start
    _free_memory(state.device)
    return entry


def machine_info(device: torch.device) -> dict:
    import diffusers
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "gpu": None,
        "gpu_memory_gib": None,
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info["gpu"] = properties.name
        info["gpu_memory_gib"] = properties.total_memory / GIB
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def targets_report(sections: dict, size: BenchSize, device: torch.device) -> dict:
    """Each target, its measured value (None where the section did not give one) and whether
    it is met; targets apply to the real size on a GPU only."""
    applies = size.name == "1.3b" and device.type == "cuda"

    def value(section: str, *keys):
        entry = sections.get(section, {})
        if "interrupted" in entry:  # a partial run measures no target
            return None
        for key in keys:
            if not isinstance(entry, dict) or key not in entry:
                return None
            entry = entry[key]
        return entry

    measured = {
        "step_overhead_pct": value(
            "transformer_step", "models", "FactorPortrait per_token", "overhead_pct"
        ),
        "step_overhead_pct_per_frame": value(
            "transformer_step", "models", "FactorPortrait per_frame", "overhead_pct"
        ),
        "generation_s": value("generation", "wall_s"),
        "generation_peak_gb": value("generation", "peak_gb"),
        "offload_peak_gb": value("generation_offload", "peak_gb"),
    }
    report = {"applies": applies}
    for key, found in measured.items():
        limit = TARGETS[key.removesuffix("_per_frame")]
        met = None if (found is None or not applies) else found <= limit
        report[key] = {"value": found, "at_most": limit, "met": met}
    return report


def run_benchmark(
    model: str = "1.3b",
    device: str = "auto",
    *,
    steps: int = 50,
    guidance: float = GENERATION.guidance_scale,
    repeats: int = 5,
    deadline_s: float = 420.0,
    sections: tuple[str, ...] | None = None,
    compile_backend: str | None = None,
    json_path: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the sections in order; returns (and, with ``json_path``, writes after every
    section, so a run stopped from outside still leaves what it measured) the report."""
    if model not in SIZES:
        raise InputError(f"model: {model!r} is not one of {', '.join(SIZES)}")
    sections = SECTIONS if sections is None else sections
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise InputError(f"sections: unknown {sorted(unknown)} (known: {', '.join(SECTIONS)})")
    if not LIMITS.min_guidance_scale <= guidance <= LIMITS.max_guidance_scale:
        raise InputError(
            f"guidance: {guidance} is outside "
            f"[{LIMITS.min_guidance_scale:g}, {LIMITS.max_guidance_scale:g}]"
        )
    if not LIMITS.min_steps <= steps <= LIMITS.max_steps:
        raise InputError(f"steps: {steps} is outside [{LIMITS.min_steps}, {LIMITS.max_steps}]")
    size = SIZES[model]
    target = resolve_device(device)
    deadline = Deadline(deadline_s)
    state = BenchState(
        size=size,
        device=target,
        dtype=torch.bfloat16 if target.type == "cuda" else torch.float32,
        steps=steps,
        guidance=guidance,
        repeats=repeats,
        compile_backend=compile_backend or ("inductor" if target.type == "cuda" else "eager"),
        deadline=deadline,
    )
    report = {
        "command": "bench-gpu",
        "machine": machine_info(target),
        "settings": {
            "model": model,
            "dtype": str(state.dtype),
            "frames": size.frames,
            "height": size.height,
            "width": size.width,
            "steps": steps,
            "guidance_scale": guidance,
            "repeats": repeats,
            "deadline_s": deadline_s,
            "compile_backend": state.compile_backend,
            "animate_frames": size.animate_frames,
            "animate_height": size.animate_height,
            "animate_width": size.animate_width,
            "weights": "random",
        },
        "sections": {},
    }
    started = time.perf_counter()
    verbosity = diffusers_logging.get_verbosity()
    # Casting notes and "experimental feature" warnings, once per model and backend: noise.
    diffusers_logging.set_verbosity_error()
    try:
        _run_sections(state, sections, report, started, json_path, log)
    finally:
        diffusers_logging.set_verbosity(verbosity)
        state.pipeline = None
        if "generation_compiled" in sections:
            torch._dynamo.reset()  # compiled code of blocks that no longer exist
        _free_memory(target)
    return report


def _run_sections(state, sections, report, started, json_path, log) -> None:
    for name in SECTIONS:
        if name in sections:
            entry = run_section(name, state, state.size.estimates.get(name, 0.0))
        else:
            entry = {"status": "skipped", "reason": "not asked for (--sections)"}
        report["sections"][name] = entry
        log(section_line(name, entry))
        report["total_s"] = time.perf_counter() - started
        report["targets"] = targets_report(report["sections"], state.size, state.device)
        if json_path is not None:
            json_path.write_text(json.dumps(report, indent=2) + "\n")


# ------------------------------------------------------------------------------------ output
def _headline(name: str, entry: dict) -> str:
    """The one figure a section is about, for the table."""
    if entry["status"] != "ok":
        return entry.get("reason", "")
    if name == "transformer_step":
        parts = [
            f"{model}: {row['median_s']:.3f} s ({row['overhead_pct']:+.1f}%)"
            for model, row in entry["models"].items()
        ]
        return "; ".join(parts)
    if name == "attention_backends":
        working = ", ".join(
            f"{backend} {entry['backends'][backend]['median_s']:.3f} s"
            for backend in entry["worked"]
        )
        return f"fastest {entry['fastest']} ({working})"
    if "wall_s" in entry:
        peak = f", peak {entry['peak_gb']:.1f} GB" if entry.get("peak_gb") is not None else ""
        done = "" if entry["steps_done"] == entry["steps"] else f" ({entry['steps_done']} steps)"
        return f"{entry['wall_s']:.2f} s{done}{peak}"
    peak = f", peak {entry['peak_gb']:.1f} GB" if entry.get("peak_gb") is not None else ""
    return f"{entry['median_s']:.3f} s per step{peak}"


def section_line(name: str, entry: dict) -> str:
    seconds = entry.get("section_s", 0.0)
    return f"{name:30s} {entry['status']:8s} {seconds:7.1f} s  {_headline(name, entry)}"


def print_table(report: dict, log: Callable[[str], None] = print) -> None:
    settings, machine = report["settings"], report["machine"]
    log(
        f"\nbench-gpu: {settings['model']} ({settings['weights']} weights), "
        f"{settings['frames']}x{settings['height']}x{settings['width']}, {settings['steps']} "
        f"steps, guidance {settings['guidance_scale']:g}, {settings['dtype']}, on "
        f"{machine['gpu'] or machine['device']}; torch {machine['torch']}, diffusers "
        f"{machine['diffusers']}; {report['total_s']:.0f} s in all"
    )
    log(f"{'section':30s} {'status':8s} {'time':>9s}  figure")
    for name, entry in report["sections"].items():
        log(section_line(name, entry))
    targets = report["targets"]
    if targets["applies"]:
        log("targets:")
        for key, row in targets.items():
            if key == "applies":
                continue
            verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
            value = "-" if row["value"] is None else f"{row['value']:.2f}"
            log(f"  {key:30s} {value:>8s} (at most {row['at_most']:g}): {verdict}")
