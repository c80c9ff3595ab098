"""`generate`: the conditions as `preview` builds them, then diffusion, then the video."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import GENERATION
from ..engines import ENGINES, REGISTRY
from ..errors import InputError
from .arguments import (
    add_conditioning_arguments,
    add_device,
    build_conditioning_from_args,
    conditioning_settings,
    request_engine,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "generate",
        help="make the video: conditioning as in preview, then diffusion",
        description="Builds the conditions as `preview` does, then runs the FactorPortrait "
        "pipeline from --checkpoint and writes an H.264 mp4. The same seed gives the same "
        "frames. Output of an untrained checkpoint is labelled as such in the video. With "
        "--engine wan-animate the public Wan2.2-Animate model is driven instead, by a skeleton "
        "video and face crops made from the same conditioning; its video is labelled as the "
        "public model, not FactorPortrait. With --engine geometry (no checkpoint) the "
        "portrait's own pixels are warped on the posed template head on the CPU; its video is "
        "labelled as a geometric warp.",
    )
    parser.add_argument(
        "--checkpoint",
        help="pipeline folder or Hub id (safetensors only; needed by the diffusion engines); "
        "for wan-animate e.g. "
        "Wan-AI/Wan2.2-Animate-14B-Diffusers or a make-tiny-checkpoint --engine wan-animate folder",
    )
    parser.add_argument(
        "--engine",
        choices=list(ENGINES),
        default=None,
        help="factorportrait (a FactorPortrait checkpoint), wan-animate (the public "
        "Wan2.2-Animate model driven by our conditioning) or geometry (the photo's own pixels "
        "warped on the CPU, no checkpoint); default $FACTORPORTRAIT_ENGINE or factorportrait",
    )
    parser.add_argument(
        "--offload",
        choices=["none", "model", "group"],
        default="none",
        help="wan-animate on CUDA: model = each component on the GPU only while it runs "
        "(24-48 GB cards), group = the transformer's blocks streamed in (least memory, slower)",
    )
    parser.add_argument(
        "--lora",
        help="wan-animate: a few-step distillation LoRA (Hub id with --lora-weight-name, folder "
        "or .safetensors file; off by default; README: Engines)",
    )
    parser.add_argument("--lora-weight-name", help="the LoRA's file inside a Hub repo or folder")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="LoRA strength (default 1)")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    add_conditioning_arguments(parser)
    # None: the engine's own (engines.REGISTRY), resolved in _request.
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps (default: the engine's own: "
        + ", ".join(f"{e.name} {e.default_steps()}" for e in REGISTRY.values() if e.diffusion)
        + ")",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale, 1 = off (default: the engine's own: "
        + ", ".join(f"{e.name} {e.default_guidance():g}" for e in REGISTRY.values() if e.diffusion)
        + ")",
    )
    parser.add_argument("--seed", type=int, default=GENERATION.seed)
    add_device(parser, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", required=True, type=Path, help="output .mp4")
    parser.add_argument(
        "--save-conditioning",
        action="store_true",
        help="also write OUT's name + .conditioning.npz (cameras, head poses, blendshapes) "
        "for `evaluate`",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..engines import GEOMETRY, WAN_ANIMATE, checked_engine, default_engine, engine_info

    engine = checked_engine(args.engine or default_engine())
    if engine_info(engine).needs_model and not args.checkpoint:
        raise InputError(f"--checkpoint: the {engine} engine needs one (geometry does not)")
    if engine == WAN_ANIMATE:
        return run_wan_animate(args)
    if engine == GEOMETRY:
        return run_geometry(args)
    from ..pipelines.generation import (
        generate_frames,
        load_pipeline,
        trained_range_warnings,
        write_generation,
    )

    settings, trajectory, sampling = _request(args)
    start = time.perf_counter()
    pipeline = load_pipeline(args.checkpoint, device=args.device, revision=args.revision)
    if pipeline.untrained:
        print(
            f"note: checkpoint {args.checkpoint} is untrained "
            f"({pipeline.transformer.config.training_status}): the video is noise and is "
            "labelled so"
        )
    cond = build_conditioning_from_args(args, settings, trajectory)
    for warning in [*cond.report.warnings, *trained_range_warnings(pipeline, cond, trajectory)]:
        print(f"warning: {warning}", file=sys.stderr)
    frames = generate_frames(
        pipeline,
        cond,
        steps=sampling.steps,
        guidance=sampling.guidance_scale,
        seed=sampling.seed,
        warn=False,  # said above, in the CLI's words
    )
    write_generation(args.out, frames, cond, save_conditioning=args.save_conditioning)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height} on "
        f"{pipeline.device} in {time.perf_counter() - start:.1f}s -> {args.out}"
    )
    print("engine: factorportrait (FactorPortrait checkpoint)")
    return 0


def run_wan_animate(args: argparse.Namespace) -> int:
    """The same conditioning, turned into a skeleton and a face-crop video for Wan2.2-Animate."""
    from ..engines.wan_animate.engine import (
        engine_description,
        generate_wan_animate,
        is_tiny_random,
        load_wan_animate,
        segment_plan,
        wan_animate_request,
        what_it_cannot_honour,
    )
    from ..pipelines.generation import write_generation

    settings, trajectory, sampling = _request(args)
    # Before anything loads: the engine's frame rate (a note when another was asked for) and
    # a frame count its windows can make (one sentence otherwise).
    settings, notes = wan_animate_request(settings)
    for note in notes:
        print(f"note: {note}")
    start = time.perf_counter()
    cond = build_conditioning_from_args(args, settings, trajectory)
    for warning in cond.report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    note = segment_plan(cond.frames)["note"]
    pipeline = load_wan_animate(
        args.checkpoint,
        args.device,
        offload=args.offload,
        lora=args.lora,
        lora_weight_name=args.lora_weight_name,
        lora_scale=args.lora_scale,
        revision=args.revision,
    )
    if is_tiny_random(pipeline):
        print(
            f"note: {args.checkpoint} is a tiny RANDOM Wan2.2-Animate pipeline: the video is "
            "noise and is labelled so"
        )
    for line in what_it_cannot_honour(cond.mode):
        print(f"note: {line}")
    if note:
        print(f"note: {note}")
    frames = generate_wan_animate(
        pipeline, cond, steps=sampling.steps, guidance=sampling.guidance_scale, seed=sampling.seed
    )
    write_generation(args.out, frames, cond, save_conditioning=args.save_conditioning)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height} on "
        f"{pipeline._execution_device} in {time.perf_counter() - start:.1f}s -> {args.out}"
    )
    print(f"engine: {engine_description(pipeline)} (not FactorPortrait); labelled in the video")
    return 0


def run_geometry(args: argparse.Namespace) -> int:
    """The same conditioning, rendered from the portrait's own pixels (no model, no torch)."""
    from ..engines.banner import label_geometry
    from ..engines.geometry import render_geometry
    from ..io import write_video

    settings, trajectory, _ = _request(args)
    start = time.perf_counter()
    cond = build_conditioning_from_args(args, settings, trajectory)
    for warning in cond.report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    frames = label_geometry(render_geometry(cond))
    if args.save_conditioning:
        from ..pipelines.generation import write_generation

        write_generation(args.out, frames, cond, save_conditioning=True)
    else:
        _check_out(args.out)
        staged = args.out.with_name(f".{args.out.name}.part.mp4")
        try:
            write_video(staged, frames, cond.fps)
            staged.replace(args.out)
        finally:
            staged.unlink(missing_ok=True)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height} on the CPU in "
        f"{time.perf_counter() - start:.1f}s -> {args.out}"
    )
    print("engine: geometry (a geometric warp of the photo: not diffusion, not FactorPortrait)")
    return 0


def _request(args: argparse.Namespace):
    """(conditioning settings, trajectory, sampling settings) of a generate call, all checked
    (and --out) before anything is loaded: the same for both engines."""

    settings, trajectory = conditioning_settings(args)
    sampling = sampling_settings(args)
    _check_out(args.out)
    return settings, trajectory, sampling


def sampling_settings(args: argparse.Namespace):
    """GenerationSettings of a generate call, checked: --steps and --guidance, or the engine's
    own where the user gave none (engines.REGISTRY: wan-animate samples with 20 steps at
    guidance 1, as Wan-Animate does)."""
    from ..pipelines.generation import GenerationSettings

    info = request_engine(args)
    return GenerationSettings(
        steps=info.default_steps() if args.steps is None else args.steps,
        guidance_scale=info.default_guidance() if args.guidance is None else args.guidance,
        seed=args.seed,
    ).validated()


def _check_out(out: Path) -> None:
    if out.suffix.lower() != ".mp4":
        raise InputError(f"--out: {out} must end in .mp4")
    if not out.resolve().parent.is_dir():
        raise InputError(f"--out: the folder {out.resolve().parent} does not exist")
