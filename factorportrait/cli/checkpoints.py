"""`make-tiny-checkpoint` and `init-from-wan`: the pipelines the other commands load."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engines import ENGINES, REGISTRY, engine_runtime
from ..errors import InputError


def register_make_tiny(commands) -> None:
    parser = commands.add_parser(
        "make-tiny-checkpoint",
        help="write a tiny RANDOM pipeline checkpoint (for tests and demos of the plumbing)",
        description="Writes a pipeline with tiny, randomly initialised components (tens of "
        "thousands of parameters) that loads with from_pretrained. Its config says it is "
        "untrained and everything that shows its output says so: it makes noise. "
        "--engine wan-animate writes diffusers' WanAnimatePipeline layout instead (the layout "
        "of the public Wan2.2-Animate weights), marked as tiny random.",
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument(
        "--engine",
        choices=[e.name for e in REGISTRY.values() if e.has_tiny_checkpoint],
        default=ENGINES[0],
        help="which pipeline: FactorPortrait's (default) or the public Wan2.2-Animate's layout",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=run_make_tiny)


def run_make_tiny(args: argparse.Namespace) -> int:
    if args.dir.exists() and any(args.dir.iterdir()):
        raise InputError(f"{args.dir} exists and is not empty")
    what = engine_runtime(args.engine).make_tiny_checkpoint(args.dir, seed=args.seed)
    print(f"{what} -> {args.dir}")
    return 0


def register_init_from_wan(commands) -> None:
    parser = commands.add_parser(
        "init-from-wan",
        help="build a starting checkpoint from a diffusers-format Wan2.1 checkpoint",
        description="Copies Wan2.1's transformer and VAE into a FactorPortrait pipeline: the new "
        "condition channels and the expression controller start at zero, so it behaves as "
        "plain Wan until trained. Needs the Wan checkpoint locally or from the Hub.",
    )
    parser.add_argument(
        "--wan", required=True, help="folder or Hub id (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)"
    )
    parser.add_argument("--revision", help="Hub revision of --wan")
    parser.add_argument(
        "--expression-backbone",
        help="transformers image encoder for the expression codes "
        "(e.g. facebook/dinov2-base); random when omitted",
    )
    parser.add_argument(
        "--no-normals", action="store_true", help="the paper's C2 ablation: no normal-map condition"
    )
    parser.add_argument(
        "--code-type",
        choices=["image", "blendshapes", "landmarks"],
        default="image",
        help="expression code: image encoder (paper), blendshapes, or 2-D landmarks "
        "(the C3 ablation)",
    )
    parser.add_argument("--out", required=True, type=Path)
    parser.set_defaults(handler=run_init_from_wan)


def run_init_from_wan(args: argparse.Namespace) -> int:
    from ..pipelines.checkpoints import init_from_wan

    if args.out.exists() and any(args.out.iterdir()):
        raise InputError(f"--out: {args.out} exists and is not empty")
    init_from_wan(
        args.wan,
        args.out,
        expression_backbone=args.expression_backbone,
        revision=args.revision,
        use_normals=not args.no_normals,
        code_type=args.code_type,
    )
    print(f"starting checkpoint (Wan-initialised, not trained) -> {args.out}")
    return 0
