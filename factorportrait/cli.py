"""Command line: ``python -m factorportrait <command> ...``.

Every command validates its input before doing any work; a refused input prints one line,
``error: ...``, and exits 2 (argparse's convention), with nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from . import MODES, __version__
from .config import VIDEO, check_fps, check_frame_count, parse_size
from .errors import InputError

EXIT_INPUT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (usage stays available through --help)."""

    def error(self, message: str):
        self.exit(EXIT_INPUT_ERROR, f"error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m factorportrait",
        description="FactorPortrait: controllable portrait animation "
        "(expression, head pose and viewpoint as separate controls).",
    )
    parser.add_argument("--version", action="version", version=f"factorportrait {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    cameras = commands.add_parser(
        "cameras",
        help="sample a camera trajectory: trajectory.json, rays.mp4, trajectory.html",
        description="Samples a camera trajectory (a preset or a JSON file) to per-frame cameras "
        "and writes OUT/trajectory.json (K and c2w per frame, plus the keyframes), OUT/rays.mp4 "
        "(the Plücker ray maps: direction | moment) and OUT/trajectory.html (a 3D view).",
    )
    cameras.add_argument(
        "--preset",
        "--camera",
        dest="camera",
        required=True,
        metavar="NAME|FILE",
        help="a preset from camera_presets/ (see `presets`) or a trajectory JSON file",
    )
    cameras.add_argument(
        "--frames",
        type=int,
        default=VIDEO.frames,
        help=f"number of frames, 4k+1 (default {VIDEO.frames})",
    )
    cameras.add_argument(
        "--size",
        default=str(VIDEO.height),
        help=f"S or WxH in pixels, multiples of 16 (default {VIDEO.height})",
    )
    cameras.add_argument(
        "--fps", type=float, default=VIDEO.fps, help=f"frame rate of rays.mp4 (default {VIDEO.fps})"
    )
    cameras.add_argument("--out", required=True, type=Path, help="output folder")
    cameras.set_defaults(handler=_run_cameras)

    preview = commands.add_parser(
        "preview",
        help="build every condition on the CPU and write them as videos, PNG and arrays",
        description="Tracks the portrait and the driving video, builds the camera path, head "
        "poses, normal renders, ray maps and expression features for a mode, and writes "
        "normals.mp4, rays.mp4, tracking.mp4, source.png, trajectory.json, conditioning.npz "
        "and summary.json into OUT. No GPU, no model.",
    )
    _add_conditioning_arguments(preview)
    preview.add_argument("--out", required=True, type=Path, help="output folder")
    preview.set_defaults(handler=_run_preview)

    generate = commands.add_parser(
        "generate",
        help="make the video: conditioning as in preview, then diffusion",
        description="Builds the conditions as `preview` does, then runs the FactorPortrait "
        "pipeline from --checkpoint and writes an H.264 mp4. The same seed gives the same "
        "frames. Output of an untrained checkpoint is labelled as such in the video.",
    )
    generate.add_argument(
        "--checkpoint", required=True, help="pipeline folder or Hub id (safetensors only)"
    )
    generate.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    _add_conditioning_arguments(generate)
    generate.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    generate.add_argument(
        "--guidance",
        type=float,
        default=3.0,
        help="classifier-free guidance scale, 1 = off (default 3)",
    )
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    generate.add_argument("--out", required=True, type=Path, help="output .mp4")
    generate.add_argument(
        "--save-conditioning",
        action="store_true",
        help="also write OUT's name + .conditioning.npz (cameras, head poses, blendshapes) "
        "for `evaluate`",
    )
    generate.set_defaults(handler=_run_generate)

    tiny = commands.add_parser(
        "make-tiny-checkpoint",
        help="write a tiny RANDOM pipeline checkpoint (for tests and demos of the plumbing)",
        description="Writes a pipeline with tiny, randomly initialised components (tens of "
        "thousands of parameters) that loads with from_pretrained. Its config says it is "
        "untrained and everything that shows its output says so: it makes noise.",
    )
    tiny.add_argument("dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(handler=_run_make_tiny)

    wan = commands.add_parser(
        "init-from-wan",
        help="build a starting checkpoint from a diffusers-format Wan2.1 checkpoint",
        description="Copies Wan2.1's transformer and VAE into a FactorPortrait pipeline: the new "
        "condition channels and the expression controller start at zero, so it behaves as "
        "plain Wan until trained. Needs the Wan checkpoint locally or from the Hub.",
    )
    wan.add_argument(
        "--wan", required=True, help="folder or Hub id (e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers)"
    )
    wan.add_argument("--revision", help="Hub revision of --wan")
    wan.add_argument(
        "--expression-backbone",
        help="transformers image encoder for the expression codes "
        "(e.g. facebook/dinov2-base); random when omitted",
    )
    wan.add_argument(
        "--no-normals", action="store_true", help="the paper's C2 ablation: no normal-map condition"
    )
    wan.add_argument(
        "--code-type",
        choices=["image", "blendshapes", "landmarks"],
        default="image",
        help="expression code: image encoder (paper), blendshapes, or 2-D landmarks "
        "(the C3 ablation)",
    )
    wan.add_argument("--out", required=True, type=Path)
    wan.set_defaults(handler=_run_init_from_wan)

    evaluate = commands.add_parser(
        "evaluate",
        help="measure generated videos against their conditioning (JSON + HTML report)",
        description="Tracks every generated video and measures expression accuracy, head-pose "
        "accuracy, camera accuracy, landmark jitter and identity drift against what was asked "
        "(NAME.mp4 + NAME.conditioning.npz from `generate --save-conditioning`), and PSNR/SSIM "
        "against NAME.ground_truth.mp4 where present. Writes OUT/report.json and "
        "OUT/report.html.",
    )
    evaluate.add_argument(
        "--results", required=True, type=Path, help="folder of results, or a JSON-lines manifest"
    )
    evaluate.add_argument("--out", required=True, type=Path, help="report folder")
    evaluate.add_argument("--landmarker", type=Path, help="face_landmarker.task")
    evaluate.add_argument(
        "--verbose", action="store_true", help="show MediaPipe's own log lines (hidden by default)"
    )
    evaluate.set_defaults(handler=_run_evaluate)

    prepare = commands.add_parser(
        "prepare",
        help="cache training samples from a manifest of clips (tracking, normals, rays, latents)",
        description="Reads a JSON-lines manifest of clips and writes one self-reenactment sample "
        "per clip (target = first frames; reference = last frame, or the next clip's of its "
        "multi-view group; camera motion from the clip's cameras file, static without one) "
        "into DATA/samples, with DATA/index.jsonl and DATA/skipped.jsonl. Resumable: done "
        "clips are skipped. Manifest and cameras format: README, Training.",
    )
    prepare.add_argument("--manifest", required=True, type=Path)
    prepare.add_argument("--out", required=True, type=Path)
    prepare.add_argument(
        "--checkpoint",
        required=True,
        help="pipeline whose VAE encodes the videos (e.g. from init-from-wan)",
    )
    prepare.add_argument("--frames", type=int, default=VIDEO.frames)
    prepare.add_argument("--size", default=str(VIDEO.height))
    prepare.add_argument("--fps", type=float, default=VIDEO.fps)
    prepare.add_argument("--landmarker", type=Path, help="face_landmarker.task")
    prepare.add_argument(
        "--shard",
        default="0/1",
        help="K/N: prepare only every N-th clip from the K-th (N processes, one folder)",
    )
    prepare.add_argument(
        "--windows",
        type=int,
        default=1,
        help="up to this many samples per clip, from non-overlapping windows spread over it "
        "(default 1: the clip's start)",
    )
    prepare.add_argument(
        "--keep-crops",
        action="store_true",
        help="also store the 224x224 face crops (~7 MB per 49-frame clip), so a checkpoint "
        "with another expression backbone can train on the data",
    )
    prepare.add_argument("--verbose", action="store_true")
    prepare.set_defaults(handler=_run_prepare)

    train = commands.add_parser(
        "train",
        help="fine-tune a pipeline on prepared samples (accelerate)",
        description="Flow-matching fine-tuning with accelerate; run it under `accelerate launch "
        "-m factorportrait train ...` for several GPUs or FSDP. Resumes from OUT/state.",
    )
    train.add_argument("--checkpoint", required=True, help="starting pipeline")
    train.add_argument("--data", required=True, type=Path, help="output of prepare")
    train.add_argument("--out", required=True, type=Path, help="run folder")
    train.add_argument("--config", type=Path, help="TrainConfig as JSON (every field optional)")
    train.add_argument("--cpu", action="store_true", help="force the CPU")
    train.set_defaults(handler=_run_train)

    presets = commands.add_parser(
        "presets",
        help="list the camera trajectory presets",
        description="Lists the presets in camera_presets/.",
    )
    presets.set_defaults(handler=_run_presets)

    bench = commands.add_parser(
        "bench",
        help="time the CPU stages and print the figures",
        description="Times each CPU stage (median and best of --repeats) and prints a table.",
    )
    bench.add_argument("--frames", type=int, default=VIDEO.frames)
    bench.add_argument("--size", default=str(VIDEO.height))
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument(
        "--portrait",
        type=Path,
        help="portrait for the preview timings (default: the example in assets/)",
    )
    bench.add_argument(
        "--driving", type=Path, help="driving clip for the preview timings (default: the example)"
    )
    bench.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    bench.add_argument("--markdown", type=Path, help="and as a markdown table to this file")
    bench.add_argument("--landmarker", type=Path, help="face_landmarker.task")
    bench.add_argument(
        "--model",
        help="also time a transformer step against plain Wan: tiny, 1.3b or a checkpoint folder",
    )
    bench.add_argument("--device", default="auto", help="for --model: auto, cpu, cuda")
    bench.set_defaults(handler=_run_bench)

    bench_training = commands.add_parser(
        "bench-training",
        help="what a training step costs: estimated, and measured where it can run",
        description="Estimates one training step (batch 1) from the model's exact parameter "
        "counts and FLOPs (time on an H100 at an assumed 40%% utilisation, GPU memory for "
        "weights, gradients, AdamW and activations) and, on CUDA or for the tiny model, "
        "measures real optimiser steps of the same architecture with random weights.",
    )
    bench_training.add_argument("--model", choices=("1.3b", "tiny"), default="1.3b")
    bench_training.add_argument("--frames", type=int, default=VIDEO.frames)
    bench_training.add_argument("--size", default=str(VIDEO.height))
    bench_training.add_argument(
        "--trainable", choices=("full", "lora", "new"), nargs="+", default=["full", "lora", "new"]
    )
    bench_training.add_argument("--steps", type=int, default=3, help="measured steps")
    bench_training.add_argument("--device", default="auto", help="auto, cpu, cuda")
    bench_training.add_argument(
        "--measure",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: measure on CUDA, or the tiny model anywhere (the 1.3B on a CPU takes hours)",
    )
    bench_training.add_argument("--json", type=Path, help="also write the figures here")
    bench_training.set_defaults(handler=_run_bench_training)
    return parser


def _add_conditioning_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs and settings of the factorised core, shared by preview and generate."""
    parser.add_argument("--portrait", required=True, type=Path, help="the portrait photo")
    parser.add_argument("--driving", type=Path, help="driving video (optional in camera-only mode)")
    parser.add_argument("--mode", required=True, choices=MODES)
    parser.add_argument(
        "--camera",
        metavar="NAME|FILE",
        help="trajectory preset or JSON file for camera-only and all-dynamic (default orbit)",
    )
    parser.add_argument(
        "--azimuth",
        type=float,
        default=30.0,
        help="novel-dynamic: degrees from the portrait's view (default 30)",
    )
    parser.add_argument(
        "--elevation",
        type=float,
        default=0.0,
        help="novel-dynamic: degrees from the portrait's view (default 0)",
    )
    parser.add_argument(
        "--distance",
        type=float,
        default=1.0,
        help="novel-dynamic: factor of the portrait's distance (default 1)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        help="output frames, 4k+1 (default: the driving video's length, or 49)",
    )
    parser.add_argument("--fps", type=float, default=VIDEO.fps)
    parser.add_argument(
        "--size", default=str(VIDEO.height), help="S or WxH, multiples of 16 (default 512)"
    )
    parser.add_argument(
        "--pose-strength",
        type=float,
        default=1.0,
        help="scale of the driving head motion, 0 to 2 (default 1)",
    )
    parser.add_argument(
        "--absolute-pose",
        action="store_true",
        help="copy the driving head's orientation instead of its motion",
    )
    parser.add_argument(
        "--no-smoothing",
        action="store_true",
        help="turn off temporal smoothing of pose and expression",
    )
    parser.add_argument(
        "--landmarker",
        type=Path,
        help="face_landmarker.task (default: $FACTORPORTRAIT_FACE_LANDMARKER, "
        "the user cache, or the official download)",
    )

    parser.add_argument(
        "--verbose", action="store_true", help="show MediaPipe's own log lines (hidden by default)"
    )


def _settings_from_args(args: argparse.Namespace):
    from .conditioning import ConditioningSettings
    from .viewpoint import resolve_trajectory

    height, width = parse_size(args.size)
    settings = ConditioningSettings(
        mode=args.mode,
        frames=args.frames,
        fps=args.fps,
        height=height,
        width=width,
        smoothing=not args.no_smoothing,
        relative_pose=not args.absolute_pose,
        pose_strength=args.pose_strength,
        novel_azimuth=args.azimuth,
        novel_elevation=args.elevation,
        novel_distance=args.distance,
    ).validated()
    trajectory = resolve_trajectory(args.camera) if args.camera else None
    if trajectory is not None and not settings.mode.moving_camera:
        raise InputError(
            f"--camera: mode {args.mode} keeps the camera still; use camera-only "
            "or all-dynamic to follow a trajectory"
        )
    return settings, trajectory


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _native_logs_hidden(not getattr(args, "verbose", False)):
            return args.handler(args) or 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


@contextlib.contextmanager
def _native_logs_hidden(hide: bool):
    """MediaPipe's C++ code logs to file descriptor 2 from its own threads; a command's output
    should be ours alone. Python keeps writing to the real stderr through a duplicate."""
    if not hide or sys.stderr is not sys.__stderr__:  # under pytest's capture: leave it be
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, 2)
        os.close(saved)


def _run_cameras(args: argparse.Namespace) -> int:
    from .viewpoint import resolve_trajectory
    from .viewpoint.export import compute_camera_outputs, write_camera_outputs

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    fps = check_fps(args.fps)
    trajectory = resolve_trajectory(args.camera)
    start = time.perf_counter()
    outputs = compute_camera_outputs(trajectory, frames, height, width, fps)
    paths = write_camera_outputs(outputs, args.out)
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.2f}s" for k, v in outputs.timings.items())
    print(
        f"{trajectory.name}: {frames} frames at {width}x{height} in "
        f"{time.perf_counter() - start:.2f}s ({timings})"
    )
    for path in paths.values():
        print(f"  {path}")
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    import numpy as np

    from .conditioning import build_conditioning
    from .generation import check_generation_settings, generate_frames, load_pipeline
    from .io import write_video

    settings, trajectory = _settings_from_args(args)
    check_generation_settings(args.steps, args.guidance)
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
    cond = build_conditioning(
        args.portrait,
        args.driving,
        settings=settings,
        trajectory=trajectory,
        landmarker_path=args.landmarker,
    )
    frames = generate_frames(
        pipeline, cond, steps=args.steps, guidance=args.guidance, seed=args.seed
    )
    staged = args.out.with_name(f".{args.out.name}.partial.mp4")
    try:
        write_video(staged, frames, cond.fps)
        if args.save_conditioning:
            keep = ("K", "c2w", "head_pose", "blendshapes", "blendshape_names", "fps", "mode")
            arrays = cond.arrays()
            np.savez(
                args.out.with_name(args.out.name.removesuffix(".mp4") + ".conditioning.npz"),
                **{key: arrays[key] for key in keep},
            )
        staged.replace(args.out)
    finally:
        staged.unlink(missing_ok=True)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height} on "
        f"{pipeline.device} in {time.perf_counter() - start:.1f}s -> {args.out}"
    )
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from .generation import load_pipeline
    from .training.prepare import prepare

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    if height != width:
        raise InputError("--size: training samples are square (give one number)")
    shard = _parse_shard(args.shard)
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


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise InputError(f"--shard {text}: expected K/N with 0 <= K < N")
    return k, n


def _run_train(args: argparse.Namespace) -> int:
    from .training.config import TrainConfig
    from .training.loop import train

    result = train(
        args.checkpoint, args.data, args.out, TrainConfig.load(args.config), cpu=args.cpu
    )
    print(
        f"{result['steps']} steps, last losses {result['mean_loss_last']:.4f} -> "
        f"{result['final_checkpoint']}"
    )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.harness import evaluate

    report = evaluate(args.results, args.out, args.landmarker)
    for name, value in report["aggregate"].items():
        print(f"{name:24s} {value:10.4f}")
    print(f"{report['count']} videos -> {args.out / 'report.json'}, {args.out / 'report.html'}")
    return 0


def _run_make_tiny(args: argparse.Namespace) -> int:
    from .checkpoints import make_tiny_checkpoint

    if args.dir.exists() and any(args.dir.iterdir()):
        raise InputError(f"{args.dir} exists and is not empty")
    make_tiny_checkpoint(args.dir, seed=args.seed)
    print(f"tiny RANDOM checkpoint (untrained, output is noise) -> {args.dir}")
    return 0


def _run_init_from_wan(args: argparse.Namespace) -> int:
    from .checkpoints import init_from_wan

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


def _run_preview(args: argparse.Namespace) -> int:
    from .conditioning import build_conditioning
    from .preview import write_preview

    settings, trajectory = _settings_from_args(args)
    start = time.perf_counter()
    cond = build_conditioning(
        args.portrait,
        args.driving,
        settings=settings,
        trajectory=trajectory,
        landmarker_path=args.landmarker,
    )
    paths = write_preview(cond, args.out, trajectory)
    print(
        f"{cond.mode}: {cond.frames} frames at {cond.width}x{cond.height}, "
        f"{cond.fps:g} fps, in {time.perf_counter() - start:.2f}s"
    )
    for warning in cond.report["warnings"]:
        print(f"  note: {warning}")
    for path in paths.values():
        print(f"  {path}")
    return 0


def _run_presets(args: argparse.Namespace) -> int:
    from .viewpoint import load_presets

    presets = load_presets()
    width = max(map(len, presets))
    for name, trajectory in presets.items():
        print(f"{name:{width}s}  {trajectory.description}")
    return 0


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_bench_training(args: argparse.Namespace) -> int:
    import statistics

    from .generation import resolve_device
    from .training.cost import estimate_training_step, measure_training_step

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    if args.steps < 1:
        raise InputError(f"steps: expected at least 1, got {args.steps}")
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


def _run_bench(args: argparse.Namespace) -> int:
    from . import bench

    frames = check_frame_count(args.frames)
    height, width = parse_size(args.size)
    if args.repeats < 1:
        raise InputError(f"repeats: expected at least 1, got {args.repeats}")
    portrait = args.portrait or bench.EXAMPLE_PORTRAIT
    driving = args.driving or bench.EXAMPLE_DRIVING
    rows = bench.camera_benchmark(frames, height, width, args.repeats)
    bench.print_report(rows, frames, height, width)
    preview_rows = bench.preview_benchmark(
        portrait, driving, frames, height, width, args.repeats, args.landmarker
    )
    render_rows = bench.render_benchmark(frames, (256, 512, 1024), args.repeats, args.landmarker)
    pipeline_rows = bench.tiny_pipeline_benchmark(frames, height, args.repeats)
    print()
    bench.print_report(
        preview_rows + render_rows + pipeline_rows,
        frames,
        height,
        width,
        title="preview (all-dynamic, warm tracker), rasteriser, tiny pipeline",
    )
    model_rows = None
    if args.model is None and args.device != "cpu" and torch_cuda_available():
        args.model = "1.3b"  # on a GPU, always measure the real size against plain Wan
    if args.model is not None:
        print()
        model_rows = bench.model_benchmark(
            args.model, frames, height, width, args.repeats, args.device
        )
        bench.print_model_report(model_rows, args.model, frames, height, width)
    summary = bench.summary_json(
        dict(rows + preview_rows + render_rows + pipeline_rows),
        frames,
        height,
        args.repeats,
        model_rows,
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\n-> {args.json}")
    if args.markdown:
        args.markdown.write_text(bench.summary_markdown(summary))
        print(f"-> {args.markdown}")
    return 0
