"""Face tracking done once per content: the web service keeps one ``TrackingCache`` for all its
sessions, so a preview or generation of uploads already tracked (on upload, or by an earlier
preview) does not run MediaPipe again; a change of mode, path, view or size re-renders only.

Keyed by the pixels tracked (and, for a clip, the times), never by file names: two uploads of
the same file share an entry, a changed file never hits a stale one. Bounded (least recently
used out first) and thread-safe; each request still gets its own MediaPipe landmarker, made only
on a miss (landmarkers are not shared between threads).
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .landmarker import FaceObservation, FaceTracker, _box_area

# About 2 MB per tracked 49-frame clip, less for a photo.
# A caller waits this long for another's tracking of the same content (a 49-frame clip takes
# about half a second), then tracks it itself.
TRACKING_WAIT_S = 60.0
DEFAULT_MAX_ENTRIES = 64


def content_key(*arrays: np.ndarray, extra: tuple = ()) -> str:
    """A digest of arrays' shapes, types and bytes (blake2b: ~1 GB/s, 45 ms for a 49-frame
    640x480 clip against ~500 ms to track it)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(extra).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


class TrackingCache:
    """Tracking results by content key; ``hits`` and ``misses`` count lookups (for tests and
    the benchmark)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple] = OrderedDict()
        self._tracking: dict[str, threading.Event] = {}  # keys being tracked now
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str):
        """A private copy of the stored (result, blendshape names), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return copy.deepcopy(entry)  # callers may transform what they get

    def get_or_track(self, key: str, track):
        """A private copy of the stored (result, blendshape names), or ``track()``'s (which
        returns that pair), stored. One caller tracks a key at a time: a request for content
        being tracked (a preview clicked while the upload's own tracking runs) waits for it
        instead of tracking it again on the same cores; if that tracking fails, the next
        caller tracks, and one that waits past ``TRACKING_WAIT_S`` tracks a copy of its own."""
        claimed = False
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    break
                running = self._tracking.get(key)
                if running is None:
                    self._tracking[key] = threading.Event()
                    self.misses += 1
                    claimed = True
                    break
            if not running.wait(TRACKING_WAIT_S):  # stuck: track a copy of its own
                with self._lock:
                    self.misses += 1
                break
        if entry is not None:
            return copy.deepcopy(entry)  # callers may transform what they get
        try:
            result, names = track()
            self.put(key, result, names)
            return result, names
        finally:
            if claimed:
                with self._lock:
                    self._tracking.pop(key).set()

    def put(self, key: str, result, blendshape_names: list[str] | None) -> None:
        with self._lock:
            self._entries[key] = copy.deepcopy((result, blendshape_names))
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def tracker(self, model_path: str | Path | None = None, max_faces: int = 4) -> CachedTracker:
        return CachedTracker(self, model_path, max_faces)


class CachedTracker:
    """A ``FaceTracker`` in front of a ``TrackingCache``: the same methods and attributes the
    conditioning core uses; MediaPipe runs only on a miss. One per request."""

    def __init__(self, cache: TrackingCache, model_path=None, max_faces: int = 4):
        self.cache = cache
        self._tracker = FaceTracker(model_path, max_faces=max_faces)
        self.model_path = self._tracker.model_path
        self.blendshape_names: list[str] | None = None
        self._identity = (str(self.model_path), max_faces)

    def __enter__(self) -> CachedTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._tracker.close()

    def _cached(self, key: str, track):
        result, names = self.cache.get_or_track(
            key, lambda: (track(), self._tracker.blendshape_names)
        )
        self.blendshape_names = self.blendshape_names or names
        return result

    def track_faces(self, rgb: np.ndarray) -> list[FaceObservation]:
        key = content_key(rgb, extra=("faces", *self._identity))
        return self._cached(key, lambda: self._tracker.track_faces(rgb))

    def track_image(self, rgb: np.ndarray) -> FaceObservation | None:
        """The largest face, as ``FaceTracker.track_image`` picks it, from the cached faces: a
        photo tracked on upload (``track_faces``) is not tracked again by the preview."""
        faces = self.track_faces(rgb)
        return max(faces, key=_box_area) if faces else None

    def track_frames(self, frames: np.ndarray, times: np.ndarray) -> list[FaceObservation | None]:
        key = content_key(frames, np.asarray(times, np.float64), extra=("clip", *self._identity))
        return self._cached(key, lambda: self._tracker.track_frames(frames, times))
