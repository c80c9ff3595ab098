"""MediaPipe, imported without the parts of it this project never calls.

``import mediapipe`` runs the package's ``__init__``, which imports every task MediaPipe has:
the audio and text tasks and, through the vision package, its drawing utilities, which import
``matplotlib.pyplot``. That is about 1.1 s of the ~5 s ``preview`` command on two cores, for
code we never run. The standard library's ``importlib.util.LazyLoader`` is made for this: those
modules are created at once (so every ``import`` of them succeeds) and run only if something
touches them, at which point they load as usual. Nothing else about MediaPipe changes.
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

_lock = threading.Lock()


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


def load_mediapipe():
    """The ``mediapipe`` package, its unused modules deferred if this is its first import."""
    with _lock:
        if "mediapipe" not in sys.modules:
            finder = _LazyUnused()
            sys.meta_path.insert(0, finder)
            try:
                import mediapipe.tasks.python.vision  # noqa: F401
            finally:
                sys.meta_path.remove(finder)
        return sys.modules["mediapipe"]
