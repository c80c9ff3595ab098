"""How a call is timed and its GPU memory read, for the CPU stages and the GPU benchmark alike.

On a GPU every timed call is synchronised before and after (the time is the work's, not its
launch's); on a CPU, or with no device given, nothing is synchronised. GPU memory is read on
CUDA only (``None`` elsewhere).
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

import torch

GB = 1e9
GIB = 2**30


class Deadline:
    """A point in time the whole run must end by; sections ask it before they start and loops
    ask it between repeats."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def remaining(self) -> float:
        return self.end - time.perf_counter()

    def passed(self) -> bool:
        return self.remaining() <= 0


def sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def free_memory(device: torch.device) -> None:
    """Give the models of a finished measurement back to the GPU (a CPU run skips the slow full
    garbage collection: its memory is not measured)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def time_calls(
    fn: Callable[[], object],
    repeats: int,
    device: torch.device | None = None,
    deadline: Deadline | None = None,
) -> list[float]:
    """Seconds per call, ``repeats`` calls, synchronised on a GPU; with a ``deadline``, at least
    one call and none once it has passed."""
    times = []
    for _ in range(repeats):
        if times and deadline is not None and deadline.passed():
            break
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def timing_summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "best_s": min(times), "repeats": len(times)}


def memory_summary(peak: int | None) -> dict:
    if peak is None:
        return {"peak_gib": None, "peak_gb": None, "peak_note": "GPU memory is measured on CUDA"}
    return {"peak_gib": peak / GIB, "peak_gb": peak / GB}
