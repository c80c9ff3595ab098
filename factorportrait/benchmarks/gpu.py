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
the global deadline. ``--model tiny`` runs the same code end to end on a CPU in seconds. This
module runs the sections in order (``gpu_sections``) and keeps the report; ``gpu_report`` prints
it, ``sizes`` says what is built at which size.

Imports (here and in those parts) only torch, diffusers, transformers, numpy and our model and
pipeline modules: the GPU machine has no mediapipe, gradio, trimesh or plotly.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging

from ..config import GENERATION, LIMITS
from ..errors import InputError
from .gpu_report import section_line
from .gpu_sections import SECTION_RUNNERS, BenchState, SectionSkipped, error_text
from .sizes import SECTIONS, SIZES, TARGETS, BenchSize
from .timing import GIB, Deadline, free_memory


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
        entry = {"status": "failed", "reason": f"out of memory: {error_text(exc)}"}
    except Exception as exc:  # recorded; the other sections still run
        entry = {"status": "failed", "reason": error_text(exc)}
    entry["section_s"] = time.perf_counter() - start
    free_memory(state.device)
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
        free_memory(target)
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
