"""Frames shared out to threads (factorportrait.frame_threads): every frame exactly once, in
contiguous runs, results back in frame order."""

import itertools
import threading

import pytest

from factorportrait import frame_threads


@pytest.mark.parametrize("cores", [1, 2, 3, 8])
@pytest.mark.parametrize("frames", [1, 2, 5, 49])
def test_every_frame_once_in_order(monkeypatch, cores, frames):
    monkeypatch.setattr(frame_threads, "worker_count", lambda: cores)
    seen = []
    # Every run waits for all the others: passes only if they run at the same time.
    together = threading.Barrier(min(cores, frames), timeout=10)

    def kernel(tag, start, stop):
        together.wait()
        seen.extend(range(start, stop))
        return (tag, start, stop)

    runs = frame_threads.over_frames(kernel, frames, "x")
    assert sorted(seen) == list(range(frames))  # each frame once
    assert [run[1] for run in runs] == sorted(run[1] for run in runs)  # in frame order
    assert all(run[0] == "x" for run in runs)  # the kernel's own arguments came through
    assert all(run[2] == after[1] for run, after in itertools.pairwise(runs))  # contiguous
    assert runs[0][1] == 0 and runs[-1][2] == frames
    assert len(runs) == min(cores, frames)  # one run per core, never an empty one
