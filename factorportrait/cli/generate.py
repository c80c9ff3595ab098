"""`generate`: the conditions as `preview` builds them, then diffusion, then the video."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..config import GENERATION
from ..errors import InputError
from .arguments import (
    add_conditioning_arguments,
    add_device,
    build_conditioning_from_args,
    conditioning_settings,
)


def register(commands) -> None:
    parser = commands.add_parser(
        "generate",
        help="make the video: conditioning as in preview, then diffusion",
        description="Builds the conditions as `preview` does, then runs the FactorPortrait "
        "pipeline from --checkpoint and writes an H.264 mp4. The same seed gives the same "
        "frames. Output of an untrained checkpoint is labelled as such in the video.",
    )
    parser.add_argument(
        "--checkpoint", required=True, help="pipeline folder or Hub id (safetensors only)"
    )
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    add_conditioning_arguments(parser)
    parser.add_argument(
        "--steps",
        type=int,
        default=GENERATION.steps,
        help=f"denoising steps (default {GENERATION.steps})",
    )
    parser.add_argument(
        "--guidance",
        type=float,
        default=GENERATION.guidance_scale,
        help=f"classifier-free guidance scale, 1 = off (default {GENERATION.guidance_scale:g})",
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
    from ..generation import (
        GenerationSettings,
        generate_frames,
        load_pipeline,
        trained_range_warnings,
        write_generation,
    )

    settings, trajectory = conditioning_settings(args)
    sampling = GenerationSettings(
        steps=args.steps, guidance_scale=args.guidance, seed=args.seed
    ).validated()
    if args.out.suffix.lower() != ".mp4":
        raise InputError(f"--out: {args.out} must end in .mp4")
    if not args.out.resolve().parent.is_dir():
        raise InputError(f"--out: the folder {args.out.resolve().parent} does not exist")
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
    return 0
