"""`prepare` (cache training samples), `train` (fine-tune) and `bench-training` (what a training
step costs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import check_fps
from ..errors import InputError
from .arguments import (
    add_device,
    add_fps,
    add_frames,
    add_landmarker,
    add_out,
    add_size,
    add_verbose,
    check_at_least_one,
    frames_and_size,
)


def register_prepare(commands) -> None:
    parser = commands.add_parser(
        "prepare",
        help="cache training samples from a manifest of clips (tracking, normals, rays, latents)",
        description="Reads a JSON-lines manifest of clips and writes one self-reenactment sample "
        "per clip (target = first frames; reference = last frame, or the next clip's of its "
        "multi-view group; camera motion from the clip's cameras file, static without one) "
        "into DATA/samples, with DATA/index.jsonl and DATA/skipped.jsonl. Resumable: done "
        "clips are skipped. Manifest and cameras format: README, Training.",
    )
    parser.add_argument("--manifest", required=True, type=Path)
    add_out(parser)
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="pipeline whose VAE encodes the videos (e.g. from init-from-wan)",
    )
    add_frames(parser)
    add_size(parser)
    add_fps(parser)
    add_landmarker(parser)
    parser.add_argument(
        "--shard",
        default="0/1",
        help="K/N: prepare only every N-th clip from the K-th (N processes, one folder)",
    )
    parser.add_argument(
        "--windows",
        type=int,
        default=1,
        help="up to this many samples per clip, from non-overlapping windows spread over it "
        "(default 1: the clip's start)",
    )
    parser.add_argument(
        "--keep-crops",
        action="store_true",
        help="also store the 224x224 face crops (~7 MB per 49-frame clip), so a checkpoint "
        "with another expression backbone can train on the data",
    )
    add_verbose(parser, help=None)
    parser.set_defaults(handler=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from ..pipelines.generation import load_pipeline
    from ..training.prepare import prepare

    frames, height, width = frames_and_size(args)
    if height != width:
        raise InputError("--size: training samples are square (give one number)")
    shard = parse_shard(args.shard)
    pipeline = load_pipeline(args.checkpoint, device="auto")
    counts = prepare(
        args.manifest,
        args.out,
        pipeline,
        frames=frames,
        size=height,
        fps=check_fps(args.fps),
        landmarker=args.landmarker,
        shard=shard,
        keep_crops=args.keep_crops,
        windows=args.windows,
    )
    print(
        f"{counts['samples']} samples in {args.out} ({counts['skipped']} clips skipped this "
        f"run, see {args.out / 'skipped.jsonl'})"
    )
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    """--shard K/N: (K, N) with 0 <= K < N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise InputError(f"--shard {text}: expected K/N with 0 <= K < N")
    return k, n


def register_train(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="fine-tune a pipeline on prepared samples (accelerate)",
        description="Flow-matching fine-tuning with accelerate; run it under `accelerate launch "
        "-m factorportrait train ...` for several GPUs or FSDP. Resumes from OUT/state.",
    )
    parser.add_argument("--checkpoint", required=True, help="starting pipeline")
    parser.add_argument("--data", required=True, type=Path, help="output of prepare")
    add_out(parser, help="run folder")
    parser.add_argument("--config", type=Path, help="TrainConfig as JSON (every field optional)")
    parser.add_argument("--cpu", action="store_true", help="force the CPU")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ..training.config import TrainConfig
    from ..training.loop import train

    result = train(
        args.checkpoint, args.data, args.out, TrainConfig.load(args.config), cpu=args.cpu
    )
    if result["main_process"]:  # once, not once per process under torchrun
        print(
            f"{result['steps']} steps, last losses {result['mean_loss_last']:.4f} -> "
            f"{result['final_checkpoint']}"
        )
    return 0


def register_bench_training(commands) -> None:
    parser = commands.add_parser(
        "bench-training",
        help="what a training step costs: estimated, and measured where it can run",
        description="Estimates one training step (batch 1) from the model's exact parameter "
        "counts and FLOPs (time on an H100 at an assumed 40%% utilisation, GPU memory for "
        "weights, gradients, AdamW and activations) and, on CUDA or for the tiny model, "
        "measures real optimiser steps of the same architecture with random weights.",
    )
    parser.add_argument("--model", choices=("1.3b", "tiny"), default="1.3b")
    add_frames(parser)
    add_size(parser)
    parser.add_argument(
        "--trainable", choices=("full", "lora", "new"), nargs="+", default=["full", "lora", "new"]
    )
    parser.add_argument("--steps", type=int, default=3, help="measured steps")
    add_device(parser, help="auto, cpu, cuda")
    parser.add_argument(
        "--measure",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: measure on CUDA, or the tiny model anywhere (the 1.3B on a CPU takes hours)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.set_defaults(handler=run_bench_training)


def run_bench_training(args: argparse.Namespace) -> int:
    import statistics

    from ..pipelines.generation import resolve_device
    from ..training.cost import estimate_training_step, measure_training_step

    frames, height, width = frames_and_size(args)
    check_at_least_one(args.steps, "steps")
    device = resolve_device(args.device)
    measure = args.measure == "yes" or (
        args.measure == "auto" and (device.type == "cuda" or args.model == "tiny")
    )
    print(f"training step, {args.model}, {frames}x{height}x{width}, batch 1")
    header = f"{'trainable':10s} {'params':>8s} {'trained':>8s} {'TFLOP':>7s} {'est. s':>7s} "
    header += f"{'est. GiB':>8s} {'meas. s':>8s} {'peak GiB':>8s}"
    print(header)
    rows = []
    for mode in args.trainable:
        row = estimate_training_step(args.model, frames, height, width, mode)
        if measure:
            row["measured"] = measure_training_step(
                args.model, frames, height, width, mode, steps=args.steps, device=device
            )
        rows.append(row)
        measured = row.get("measured")
        seconds = f"{statistics.median(measured['seconds']):8.3f}" if measured else f"{'-':>8s}"
        peak = measured["peak_gib"] if measured and measured["peak_gib"] else None
        peak_text = f"{peak:8.1f}" if peak is not None else f"{'-':>8s}"
        print(
            f"{mode:10s} {row['parameters'] / 1e9:7.3f}B {row['trainable'] / 1e6:7.2f}M "
            f"{row['step_tflop']:7.1f} {row['seconds']:7.2f} {row['gpu_gib']:8.1f} {seconds} "
            f"{peak_text}"
        )
    print(f"estimates assume {rows[0]['assumptions']}; ", end="")
    print(f"measured on {device}" if measure else "not measured here (run on a GPU)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"-> {args.json}")
    return 0
