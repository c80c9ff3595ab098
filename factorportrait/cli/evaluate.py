"""`evaluate`: generated videos measured against their conditioning; `ablate`: several
checkpoints or engines on the same held-out set, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_device, add_landmarker, add_out, add_verbose


def register(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="measure generated videos against their conditioning (JSON + HTML report)",
        description="Tracks every generated video and measures expression accuracy, head-pose "
        "accuracy, camera accuracy, view consistency, landmark jitter, identity drift and "
        "identity kept from the portrait (dlib: descriptor distance, dlib_distance, and the "
        "share of frames under dlib's same-person 0.6, dlib_same_person_share; with --arcface: "
        "ArcFace CSIM, arcface_csim) against what was asked (NAME.mp4 + "
        "NAME.conditioning.npz from `generate --save-conditioning`), and PSNR/SSIM (LPIPS/FVD "
        "when their networks are given) against NAME.ground_truth.mp4 where present. Writes "
        "OUT/report.json and OUT/report.html.",
    )
    parser.add_argument(
        "--results", required=True, type=Path, help="folder of results, or a JSON-lines manifest"
    )
    add_out(parser, help="report folder")
    _add_measure_options(parser)
    add_landmarker(parser)
    add_verbose(parser)
    parser.set_defaults(handler=run)


def register_ablate(commands) -> None:
    parser = commands.add_parser(
        "ablate",
        help="several checkpoints / engines on one held-out set: the paper's table",
        description="Generates the same held-out set with every --checkpoint (a prepared "
        "folder's validation split with --data, self-reenactment against its ground truth; or "
        "portraits and driving clips with --inputs, for any engine), takes every --results "
        "folder as it is, evaluates them all and writes OUT/ablation.json, OUT/ablation.md (the "
        "table) and OUT/ablation.html (the table and the videos side by side).",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="LABEL=[ENGINE:]PATH|LABEL=geometry",
        help="a run to generate, e.g. full=runs/full/checkpoint-2000, "
        "C2=runs/c2/checkpoint-2000, animate=wan-animate:Wan-AI/Wan2.2-Animate-14B-Diffusers "
        "(ENGINE: factorportrait or wan-animate; read from a local folder when left out); "
        "geo=geometry for the geometric engine (no checkpoint, --inputs only)",
    )
    parser.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="results already made: a folder or a manifest (e.g. runs/c1/validation/index.jsonl)",
    )
    held_out = parser.add_mutually_exclusive_group()
    held_out.add_argument("--data", type=Path, help="a prepared folder: its validation split")
    held_out.add_argument(
        "--inputs",
        type=Path,
        help="JSON lines of {name, portrait, driving, mode, camera, ground_truth, frames, size}",
    )
    parser.add_argument("--samples", type=int, help="only the first N held-out samples")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (default 30)")
    parser.add_argument("--guidance", type=float, default=1.0, help="guidance scale (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    add_device(parser, help="cpu, cuda, cuda:N or auto (default)")
    add_out(parser, help="comparison folder (each checkpoint's videos go to OUT/LABEL/)")
    _add_measure_options(parser)
    add_landmarker(parser)
    add_verbose(parser)
    parser.set_defaults(handler=run_ablate)


def _add_measure_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arcface",
        type=Path,
        help="ArcFace IResNet weights (safetensors): identity as ArcFace CSIM (arcface_csim); "
        "default: dlib's face descriptor, its distance (dlib_distance) and same-person share",
    )
    parser.add_argument(
        "--lpips-weights", type=Path, help="LPIPS-VGG weights (safetensors; README: Evaluation)"
    )
    parser.add_argument(
        "--fvd-i3d",
        type=Path,
        help="I3D for FVD: a torch.export .pt2 or TorchScript file you trust (both run code)",
    )


def _measures(args: argparse.Namespace):
    from ..evaluation.harness import Measures
    from ..evaluation.identity import default_embedder
    from ..evaluation.realism import LPIPS, I3DFeatures

    return Measures(
        embedder=default_embedder(args.arcface),
        lpips=LPIPS(args.lpips_weights) if args.lpips_weights else None,
        fvd_features=I3DFeatures(args.fvd_i3d) if args.fvd_i3d else None,
    )


def run(args: argparse.Namespace) -> int:
    from ..evaluation.harness import evaluate

    report = evaluate(args.results, args.out, args.landmarker, _measures(args))
    count, measured = report["count"], report["measured"]
    for name, value in report["aggregate"].items():
        covered = measured.get(name, count)
        print(
            f"{name:24s} {value:10.4f}" + (f"  ({covered} of {count})" if covered != count else "")
        )
    print(f"{report['count']} videos -> {args.out / 'report.json'}, {args.out / 'report.html'}")
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from ..evaluation.ablation import ablate
    from ..evaluation.ablation_report import render_markdown

    comparison = ablate(
        args.out,
        checkpoints=args.checkpoint,
        results=args.results,
        data=args.data,
        inputs=args.inputs,
        samples=args.samples,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        device=args.device,
        landmarker=args.landmarker,
        measures=_measures(args),
    )
    print(render_markdown(comparison), end="")
    print(
        f"-> {args.out / 'ablation.md'}, {args.out / 'ablation.json'}, {args.out / 'ablation.html'}"
    )
    return 0
