"""Command line: ``python -m factorportrait <command> ...`` (README: Command line).

One module per command group, each registering its subcommands next to their handlers;
``main.py`` assembles the parser, ``arguments.py`` holds the options several commands share.
Handlers import their heavy dependencies (torch, diffusers, MediaPipe) when they run, so
``--help`` stays fast.

Every command validates its input before doing any work; a refused input prints one line,
``error: ...``, and exits 2 (argparse's convention), with nothing written.
"""

from .main import EXIT_INPUT_ERROR, build_parser, main

__all__ = ["EXIT_INPUT_ERROR", "build_parser", "main"]
