"""`evaluate`: generated videos measured against their conditioning."""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_landmarker, add_out, add_verbose


def register(commands) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="measure generated videos against their conditioning (JSON + HTML report)",
        description="Tracks every generated video and measures expression accuracy, head-pose "
        "accuracy, camera accuracy, landmark jitter and identity drift against what was asked "
        "(NAME.mp4 + NAME.conditioning.npz from `generate --save-conditioning`), and PSNR/SSIM "
        "against NAME.ground_truth.mp4 where present. Writes OUT/report.json and "
        "OUT/report.html.",
    )
    parser.add_argument(
        "--results", required=True, type=Path, help="folder of results, or a JSON-lines manifest"
    )
    add_out(parser, help="report folder")
    add_landmarker(parser)
    add_verbose(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..evaluation.harness import evaluate

    report = evaluate(args.results, args.out, args.landmarker)
    for name, value in report["aggregate"].items():
        print(f"{name:24s} {value:10.4f}")
    print(f"{report['count']} videos -> {args.out / 'report.json'}, {args.out / 'report.html'}")
    return 0
