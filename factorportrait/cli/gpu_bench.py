"""`bench-gpu`: the real-size GPU benchmark (random weights) in one command, as a table and
JSON (``factorportrait.benchmarks.gpu``; BENCHMARKS.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import GENERATION
from .arguments import add_device, check_at_least_one


def register(commands) -> None:
    parser = commands.add_parser(
        "bench-gpu",
        help="time the real-size models on a GPU (random weights): steps, generation, memory",
        description="Builds the models with random weights straight on the device and "
        "measures: the FactorPortrait 1.3B transformer step against plain Wan, a full guided "
        "generation's wall time and peak memory (also with model CPU offload, torch.compile "
        "and the fastest attention backend diffusers offers) and a step of the Wan2.2-Animate "
        "14B transformer. Each section is timed on its own and recorded as failed or skipped "
        "(with the reason) rather than stopping the run; sections that would overrun "
        "--deadline-s are skipped. --model tiny runs it all on a CPU in seconds.",
    )
    parser.add_argument("--model", choices=("1.3b", "tiny"), default="1.3b")
    add_device(parser, help="auto, cpu, cuda (bf16 on CUDA, float32 on a CPU)")
    parser.add_argument("--json", type=Path, help="write the figures here (after every section)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps per generation")
    parser.add_argument(
        "--guidance",
        type=float,
        default=GENERATION.guidance_scale,
        help="classifier-free guidance scale (above 1: two transformer passes per step)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed transformer steps")
    parser.add_argument(
        "--deadline-s",
        type=float,
        default=420.0,
        help="sections that would end after this many seconds are skipped (default 420: "
        "with start-up, the whole run stays under 8 minutes)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        metavar="SECTION",
        help="run only these (names as in the JSON's sections; default all)",
    )
    parser.add_argument(
        "--compile-backend",
        help="torch.compile backend (default: inductor on CUDA, eager on a CPU)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmarks.gpu import run_benchmark
    from ..benchmarks.gpu_report import print_table

    check_at_least_one(args.steps, "steps")
    check_at_least_one(args.repeats, "repeats")
    report = run_benchmark(
        args.model,
        args.device,
        steps=args.steps,
        guidance=args.guidance,
        repeats=args.repeats,
        deadline_s=args.deadline_s,
        sections=tuple(args.sections) if args.sections else None,
        compile_backend=args.compile_backend,
        json_path=args.json,
    )
    print_table(report)
    if args.json:
        print(f"\n-> {args.json}")
    return 0
