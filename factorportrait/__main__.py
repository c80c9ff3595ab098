"""``python -m factorportrait``: the command line, leaving without the interpreter's teardown."""

from __future__ import annotations

import atexit
import os
import sys

from .cli import main


def run(argv: list[str] | None = None) -> None:
    """Run a command, then exit with its status once its output is flushed and the exit
    handlers (logging, thread pools, temporary folders) have run, skipping the interpreter's
    teardown of every module and of numba's, MediaPipe's and trimesh's native state: 0.5-0.8 s
    of a ~5 s ``preview`` on two cores, spent after the files are written, for nothing."""
    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`... | head -1`): no traceback for that, as Python's documentation
        # recommends; the rest of the output goes nowhere, the status says it was cut short.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's own exit path
    if run_exit_handlers is None:  # another interpreter: the ordinary exit
        raise SystemExit(code)
    try:
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more can reach it
        pass
    run_exit_handlers()
    os._exit(code)


if __name__ == "__main__":
    run()
