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


def run(args: argparse.Namespace, *, loaded=None) -> int:
    """Any engine, through its runtime (engines.protocol): the request as the engine makes it,
    the conditioning, the engine's model, then the labelled video. ``loaded(model)``, when
    given, is called once the model is loaded (generate-parallel splits its transformer)."""
    from ..engines import checked_engine, default_engine, engine_info, engine_runtime
    from ..pipelines.generation import write_generation

    engine = checked_engine(args.engine or default_engine())
    info, runtime = engine_info(engine), engine_runtime(engine)
    if info.needs_model and not args.checkpoint:
        raise InputError(f"--checkpoint: the {engine} engine needs one")
    settings, trajectory, sampling = _request(args)
    # Before anything loads: the request as the engine makes it (wan-animate: its frame rate,
    # with a note when another was asked for, and a frame count its windows can make).
    settings, notes = runtime.request(settings)
    for note in notes:
        print(f"note: {note}")
    start = time.perf_counter()
    cond = build_conditioning_from_args(args, settings, trajectory)
    for warning in cond.report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    model = None
    if info.needs_model:
        model = runtime.load(
            args.checkpoint,
            device=args.device,
            revision=args.revision,
            offload=args.offload,
            lora=args.lora,
            lora_weight_name=args.lora_weight_name,
            lora_scale=args.lora_scale,
        )
        if loaded is not None:
            loaded(model)
    for notice in runtime.notices(model, cond):
        print(f"note: {notice}")
    for warning in runtime.warnings(cond, trajectory, model):
        print(f"warning: {warning}", file=sys.stderr)
    frames = runtime.generate(
        model, cond, steps=sampling.steps, guidance=sampling.guidance_scale, seed=sampling.seed
    )
    write_generation(args.out, frames, cond, save_conditioning=args.save_conditioning)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height} on "
        f"{runtime.device(model)} in {time.perf_counter() - start:.1f}s -> {args.out}"
    )
    print(f"engine: {runtime.describe(model)}")
    return 0


def _request(args: argparse.Namespace):
    """(conditioning settings, trajectory, sampling settings) of a generate call, all checked
    (and --out) before anything is loaded: the same for every engine."""

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
