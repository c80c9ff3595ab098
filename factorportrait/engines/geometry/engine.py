"""The `geometry` engine behind the one engine interface: no model, no checkpoint, the
portrait's own pixels rendered on the CPU (``render``), labelled as a geometric warp."""

from __future__ import annotations

import threading

from .. import GEOMETRY, engine_info
from ..protocol import EngineRuntime, Stopped
from .cache import SceneCache
from .render import Stopped as RenderStopped
from .render import render_geometry

# The render's speed on a 2-core CPU at 512x512, frames per second (BENCHMARKS.md:
# render_fps_geometry_512); the estimate scales it by the pixel count.
GEOMETRY_FPS_512 = 25.0
# Tracking and the conditioning before the first frame, seconds on that CPU.
GEOMETRY_SETUP_S = 2.0

STATUS = (
    "**geometry:** your photo's own pixels warped on the posed template head, on the CPU: "
    "a geometric warp, **not diffusion and not FactorPortrait**."
)


class GeometryEngine(EngineRuntime):
    """The geometric warp. Its one piece of state is the cache of the photos' scenes (built
    once per photo, shared by every request; the cache locks itself)."""

    info = engine_info(GEOMETRY)

    def __init__(self) -> None:
        self._scenes: SceneCache | None = None
        self._lock = threading.Lock()

    @property
    def scenes(self) -> SceneCache:
        with self._lock:  # made on the first run
            if self._scenes is None:
                self._scenes = SceneCache()
            return self._scenes

    def estimate(self, frames, size, steps, guidance):
        seconds = GEOMETRY_SETUP_S + frames * (size / 512) ** 2 / GEOMETRY_FPS_512
        return {"seconds": seconds, "gpu_gib": 0.0, "zerogpu_s": 10}

    def total_units(self, frames, steps):
        return frames

    def status_markdown(self, model, checkpoint, *, cuda):
        return STATUS

    def describe(self, model):
        return "geometry (a geometric warp of the photo: not diffusion, not FactorPortrait)"

    def generate(self, model, cond, *, steps, guidance, seed, report=None, should_stop=None):
        from ..banner import label_geometry

        total = cond.frames
        progress = None if report is None else (lambda done, _: report(done, total, "rendering"))
        try:
            frames = render_geometry(
                cond, progress=progress, should_stop=should_stop, scenes=self.scenes
            )
        except RenderStopped as stop:
            raise Stopped(stop.frame_index, total) from None
        return label_geometry(frames)
