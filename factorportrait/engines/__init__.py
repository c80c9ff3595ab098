"""Which engine makes the video (README: Engines), and what each one is: FactorPortrait's own
model, the public Wan2.2-Animate model driven by our conditioning, or the geometric engine that
warps the portrait's own pixels on the CPU. Apart from the engine code so that choosing one
(the `preview` command, the page) loads neither torch nor diffusers.

Each engine is described once here (``Engine``: what it is, whether it needs a model, its own
sampling defaults, the words burnt into its frames); surfaces read these entries rather than
comparing names where they can."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..config import GENERATION, VIDEO
from ..errors import InputError

FACTORPORTRAIT = "factorportrait"
WAN_ANIMATE = "wan-animate"
GEOMETRY = "geometry"
ENGINE_VARIABLE = "FACTORPORTRAIT_ENGINE"


@dataclass(frozen=True)
class Engine:
    """One engine as every surface sees it."""

    name: str
    summary: str  # one line: what it is and what it is not
    needs_model: bool  # a diffusion model must be loaded (a checkpoint); else it always runs
    diffusion: bool  # steps, guidance and seed mean something to it
    # Its own defaults, used by every surface when the user sets none (None: the project's,
    # config.GENERATION and config.VIDEO).
    steps: int | None = None
    guidance: float | None = None
    fps: float | None = None
    size: int | None = None  # square side in pixels

    def default_steps(self) -> int:
        return GENERATION.steps if self.steps is None else self.steps

    def default_guidance(self) -> float:
        return GENERATION.guidance_scale if self.guidance is None else self.guidance

    def default_fps(self) -> float:
        return VIDEO.fps if self.fps is None else self.fps

    def default_size(self) -> int:
        return VIDEO.height if self.size is None else self.size


REGISTRY: dict[str, Engine] = {
    FACTORPORTRAIT: Engine(
        FACTORPORTRAIT,
        "FactorPortrait's own diffusion model (normal maps, ray maps, expression codes)",
        needs_model=True,
        diffusion=True,
    ),
    WAN_ANIMATE: Engine(
        WAN_ANIMATE,
        "the public Wan2.2-Animate model driven by our skeleton and face-crop videos "
        "(NOT FactorPortrait)",
        needs_model=True,
        diffusion=True,
        # Wan-Animate's own (Wan2.2 wan/configs/wan_animate_14B.py: sample_steps 20,
        # sample_guide_scale 1.0, sample_fps 30; diffusers' WanAnimatePipeline defaults to the
        # same steps and guidance). Its one supported size is 1280x720 (wan/configs/__init__.py
        # SUPPORTED_SIZES, the preprocessing's resolution_area); our frames are square, so the
        # side is its short side, 720 (the 960x960 square of the same area is estimated at 78
        # GiB and over 6 minutes per 77-frame window: cost.estimate_wan_animate).
        steps=20,
        guidance=1.0,
        fps=30.0,
        size=720,
    ),
    GEOMETRY: Engine(
        GEOMETRY,
        "a geometric warp of the portrait's own pixels on the posed, driven template head "
        "(CPU; not diffusion, not FactorPortrait)",
        needs_model=False,
        diffusion=False,
    ),
}
# The engines every surface offers, in the page's order; $FACTORPORTRAIT_ENGINE picks the
# default.
ENGINES = tuple(REGISTRY)


def default_engine() -> str:
    """$FACTORPORTRAIT_ENGINE, or factorportrait."""
    return os.environ.get(ENGINE_VARIABLE, "").strip() or FACTORPORTRAIT


def checked_engine(engine: str) -> str:
    if engine not in REGISTRY:
        raise InputError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    return engine


def engine_info(engine: str) -> Engine:
    """The registry's entry for ``engine`` (InputError for an unknown name)."""
    return REGISTRY[checked_engine(engine)]
