"""``python -m factorportrait``: the command line, leaving without the interpreter's teardown."""

from __future__ import annotations

import atexit
import os
import select
import sys
import threading

from .cli import main
from .cli.lean_imports import defer_unused_modules


def run(argv: list[str] | None = None) -> None:
    """Run a command and exit with its status, doing what the interpreter's exit does that
    matters (other threads and thread pools joined, the exit handlers run: logging, temporary
    folders, multiprocessing's children; the output flushed) but not its teardown of every
    module and of numba's, MediaPipe's and trimesh's native state: 0.5-0.8 s of a ~5 s
    ``preview`` on two cores, spent after the files are written, for nothing."""
    defer_unused_modules()  # nothing of a command reads them: see cli.lean_imports
    try:
        code = main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # another pipe broke (a worker's, say): an error like any other
        # The reader left (`... | head -1`): no traceback for that, as Python's documentation
        # recommends. The command stopped where it was; the status says it was cut short.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    join_threads = getattr(threading, "_shutdown", None)  # CPython's own exit path
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if join_threads is None or run_exit_handlers is None:  # another interpreter: the usual exit
        raise SystemExit(code)
    join_threads()
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # output lost: the status says so, as Python's does
            code = code or 120
    os._exit(code)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (poll reports an error)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no poll here, or no real descriptor
        return False


if __name__ == "__main__":
    run()
