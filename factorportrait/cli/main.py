"""The parser, assembled from the command groups, and ``main(argv)``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .. import __version__
from ..errors import InputError
from . import (
    bench,
    cameras,
    checkpoints,
    evaluate,
    generate,
    gpu_bench,
    parallel,
    preview,
    toy_world,
    training,
)

EXIT_INPUT_ERROR = 2

# In the order `--help` lists them.
COMMANDS = (
    cameras.register_cameras,
    preview.register,
    generate.register,
    parallel.register,
    checkpoints.register_make_tiny,
    checkpoints.register_init_from_wan,
    evaluate.register,
    evaluate.register_ablate,
    training.register_prepare,
    training.register_train,
    cameras.register_presets,
    bench.register,
    training.register_bench_training,
    gpu_bench.register,
    toy_world.register,
)


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
    for register in COMMANDS:
        register(commands)
    return parser


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
