"""The GPU benchmark's sections (``bench-gpu``; ``gpu`` runs them in order): what each builds,
at the state's size, and measures. A section returns its figures or raises; ``SectionSkipped``
says why it cannot run here."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .models import (
    animate_inputs,
    as_loaded,
    build_pipeline,
    built_on,
    compared_transformers,
    generation_inputs,
    transformer_inputs,
    transformer_step,
)
from .sizes import ATTENTION_BACKENDS, BenchSize
from .timing import (
    GIB,
    Deadline,
    free_memory,
    memory_summary,
    peak_bytes,
    reset_peak,
    sync,
    time_calls,
    timing_summary,
)

# The transformer_step section's models, in the order they are built and timed.
STEP_MODELS = {
    "plain Wan": "plain",
    "FactorPortrait per_token": "per_token",
    "FactorPortrait per_frame": "per_frame",
}


class SectionSkipped(Exception):
    """Raised by a section that cannot run here; its message is the recorded reason."""


def error_text(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


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
    size, device, dtype = state.size, state.device, state.dtype
    torch.manual_seed(0)
    builders = compared_transformers(size.wan_config, code_dim=size.code_dim)
    steps, rows = {}, {}
    for name, kind in STEP_MODELS.items():
        start = time.perf_counter()
        with built_on(device, dtype):
            model = as_loaded(builders[kind]().eval())
        build_s = time.perf_counter() - start
        steps[name] = transformer_step(model, size.frames, size.height, size.width, device, dtype)
        with torch.no_grad():
            reset_peak(device)
            before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
            steps[name]()  # warm-up
            peak = peak_bytes(device)
        rows[name] = {
            "build_s": build_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "step_activation_gib": None if peak is None else (peak - before) / GIB,
            "times": [],
        }
    with torch.no_grad():
        for _ in range(state.repeats):
            for name, step in steps.items():
                rows[name]["times"] += time_calls(step, 1, device, state.deadline)
            if state.deadline.passed():
                break
    base = statistics.median(rows["plain Wan"]["times"])
    models = {}
    for name, row in rows.items():
        times = row.pop("times")
        models[name] = {**row, **timing_summary(times)}
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
            state.pipeline_error = error_text(exc)
            raise
    return state.pipeline


def run_generation(state: BenchState, *, steps: int) -> dict:
    """One generation, tensors in, decoded frames out; per-step times from the step callback,
    which also stops the run at the deadline (then ``steps_done`` < ``steps``)."""
    pipeline, device = state.pipeline, state.device
    marks = []

    def on_step_end(pipe, index, timestep, values):
        sync(device)
        marks.append(time.perf_counter())
        if state.deadline.passed():
            pipe._interrupt = True
        return {}

    free_memory(device)
    reset_peak(device)
    start = time.perf_counter()
    output = pipeline(
        **state.inputs,
        num_inference_steps=steps,
        guidance_scale=state.guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        callback_on_step_end=on_step_end,
    )
    sync(device)
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
        **memory_summary(peak_bytes(device)),
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
                backends[backend] = {"status": "unavailable", "reason": error_text(exc)}
                continue
            try:
                with torch.no_grad():
                    step()  # warm-up, and the check that it runs at all here
                    times = time_calls(step, state.repeats, device, state.deadline)
                backends[backend] = {"status": "ok", **timing_summary(times)}
            except Exception as exc:  # a backend that fails is a finding
                backends[backend] = {"status": "failed", "reason": error_text(exc)}
                free_memory(device)
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
        reset_peak(device)
        warmup = time_calls(lambda: model(**inputs), 1, device, state.deadline)
        times = time_calls(lambda: model(**inputs), min(2, state.repeats), device, state.deadline)
    _, channels, latent_frames, h_lat, w_lat = inputs["hidden_states"].shape
    return {
        "what": f"one WanAnimateTransformer3DModel forward, batch 1, {frames}x{height}x{width} "
        f"({latent_frames * (h_lat // 2) * (w_lat // 2)} tokens), {dtype}",
        "config": "tiny" if size.name == "tiny" else "Wan2.2-Animate-14B",
        "parameters": sum(p.numel() for p in model.parameters()),
        "build_s": build_s,
        "warmup_s": warmup[0],
        **timing_summary(times),
        **memory_summary(peak_bytes(device)),
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
