"""`toy-world`: train a small FactorPortrait on a synthetic world with known answers and show
what each condition carries (EXPERIMENTS.md)."""

from __future__ import annotations

import argparse
import json

from ..errors import InputError
from .arguments import add_out

# The keys of toy_world.experiment.VARIANTS (named here so --help needs no torch import).
VARIANT_NAMES = (
    "full",
    "c2-no-normals",
    "c3-landmarks",
    "c1-no-combined",
    "first-frame-rays",
    "shuffled-codes",
)
# The keys of toy_world.world.WORLDS: issue 27's graded worlds and the first experiment's.
WORLD_NAMES = ("original", "a", "b", "c", "d")
# What --variants means by default: every model in the first experiment's world; in a graded
# world the full model, the C3 ablation and the noise floor (EXPERIMENTS.md: the graded table).
DEFAULT_VARIANTS = VARIANT_NAMES[:5]
GRADED_VARIANTS = ("full", "c3-landmarks", "shuffled-codes")


def register(commands) -> None:
    parser = commands.add_parser(
        "toy-world",
        help="train a small model on a synthetic world and measure what each condition carries",
        description="Makes a synthetic world (textured heads of several subjects, head poses, "
        "expressions and cameras all known) as prepared samples, trains a small FactorPortrait "
        "with the real training loop on the CPU (the full model and the ablations C2, C3, C1 "
        "and the old ray convention), and measures on held-out samples the error of the "
        "generated target with its own conditions and with each condition swapped for another "
        "sample's. Writes OUT/results.json and OUT/table.md. See EXPERIMENTS.md.",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="training per model, as a step count fixed from the minutes (so a run gives the "
        "same numbers on any machine); default 3",
    )
    parser.add_argument("--seed", type=int, default=0, help="world, model and training seed")
    add_out(parser, help="run folder (the world in OUT/world is reused when it matches)")
    parser.add_argument(
        "--world",
        choices=WORLD_NAMES,
        default="original",
        help="which world: a (expression only: one subject, a still frontal head, a held "
        "camera), b (+ several subjects), c (+ head pose), d (+ cameras; b-d with a nearer "
        "camera and a larger mouth and eyes), or the first experiment's (default)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANT_NAMES,
        default=None,
        help="which models to train (default: the full model and the ablations C2, C3, C1 and "
        "the old ray convention; in worlds a-d the full model, C3 and shuffled-codes, the "
        "noise floor: expression codes shuffled between training samples)",
    )
    parser.add_argument("--train-samples", type=int, default=None)
    parser.add_argument("--val-samples", type=int, default=None)
    parser.add_argument(
        "--steps", type=int, default=None, help="optimiser steps (overrides --minutes)"
    )
    parser.set_defaults(handler=run_toy_world)


def run_toy_world(args: argparse.Namespace) -> int:
    if args.minutes <= 0 and args.steps is None:
        raise InputError("--minutes: expected a positive number")
    for name in ("train_samples", "val_samples", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')}: expected at least 1")
    from ..toy_world.experiment import Settings, run

    default_variants = DEFAULT_VARIANTS if args.world == "original" else GRADED_VARIANTS
    sizes = {k: getattr(args, k) for k in ("train_samples", "val_samples") if getattr(args, k)}
    settings = Settings(
        minutes=args.minutes,
        seed=args.seed,
        world=args.world,
        variants=tuple(args.variants or default_variants),
        steps=args.steps,
        **sizes,
    )
    results = run(args.out, settings)
    print((args.out / "table.md").read_text(), end="")
    if "swap_ratio" in results:
        print("swap ratios (full model):", json.dumps(results["swap_ratio"]))
        print("beta (full model):", json.dumps(results["beta"]))
    print(f"{results['seconds']:.0f} s; results in {args.out / 'results.json'}")
    return 0
