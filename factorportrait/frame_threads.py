"""Compiled per-frame kernels shared out to plain threads.

The CPU kernels of the preview (normal maps, ray maps, their colours) are numba loops compiled
with ``nogil=True``: they release the GIL, so plain threads, each given a contiguous run of
frames, keep every core busy. Not numba's ``parallel=True``: its OpenMP would be a second
threading runtime beside torch's and MediaPipe's, and they fight over the cores; plain threads
are also safe when the web app serves two requests at once.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


def worker_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def over_frames(
    kernel: Callable[..., object], frames: int, *args, workers: int | None = None
) -> list:
    """``kernel(*args, start, stop)`` over frames 0..frames, split into one contiguous run per
    core, or into ``workers`` runs (fewer when there are fewer frames); the runs' results, in
    frame order."""
    workers = max(1, min(frames, workers or worker_count()))
    bounds = [frames * i // workers for i in range(workers + 1)]
    if workers == 1:
        return [kernel(*args, 0, frames)]
    with ThreadPoolExecutor(workers) as pool:
        runs = [
            pool.submit(kernel, *args, start, stop) for start, stop in itertools.pairwise(bounds)
        ]
        return [run.result() for run in runs]
