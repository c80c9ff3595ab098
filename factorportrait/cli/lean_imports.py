"""The command line's imports kept lean: MediaPipe without the parts of it a command never
calls.

``import mediapipe`` runs the package's ``__init__``, which imports every task MediaPipe has:
the audio and text tasks and, through the vision package, its drawing utilities, which import
``matplotlib.pyplot``. That is about 1.1 s of the ~5 s ``preview`` command on two cores, for
code we never run. The standard library's ``importlib.util.LazyLoader`` is made for this: once
``defer_unused_modules`` is called, those modules are created at once (so every ``import`` of
them succeeds) and run when something first reads an attribute of them (``inspect.getmodule``,
which scans every module, does).

Only the command line defers them (``python -m factorportrait``, ``__main__.run``): its
threads (the tracking parts, the compiled loops' warm-up, training's workers) never read them,
and a module loads only when an attribute of it is read. Python 3.11's LazyLoader has no lock
(3.12.3 added one): two threads first reading a deferred module at once can see it half
loaded, so the web demo and library use, with threads that do anything, import MediaPipe
whole, as usual; they pay the second once per process, not per request.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading

# Modules imported by MediaPipe's package __init__ files that the face landmarker does not need.
UNUSED_MODULES = frozenset(
    {
        "mediapipe.tasks.python.audio",
        "mediapipe.tasks.python.text",
        "mediapipe.tasks.python.vision.drawing_styles",
        "mediapipe.tasks.python.vision.drawing_utils",  # imports matplotlib.pyplot
    }
)

_lock = threading.Lock()  # two callers at once add one finder


class _LazyUnused(importlib.abc.MetaPathFinder):
    """Finds the unused modules as the normal path finder would, with a lazy loader."""

    def find_spec(self, name, path, target=None):
        if name not in UNUSED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:  # a MediaPipe without it: the normal import
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_unused_modules() -> None:
    """From now on in this process, MediaPipe's unused modules load only when first read.
    For a process that uses MediaPipe from one thread at a time (the command line)."""
    with _lock:
        if not any(isinstance(finder, _LazyUnused) for finder in sys.meta_path):
            sys.meta_path.insert(0, _LazyUnused())
