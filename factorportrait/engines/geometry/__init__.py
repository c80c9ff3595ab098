"""The geometric engine: the portrait's own pixels on the fitted template, posed, driven and
filmed as the Conditioning says (no diffusion, no torch: it runs in the CPU preview process)."""

from .cache import SceneCache
from .render import GEOMETRY_NOTICE, Stopped, render_geometry

__all__ = ["GEOMETRY_NOTICE", "SceneCache", "Stopped", "render_geometry"]
