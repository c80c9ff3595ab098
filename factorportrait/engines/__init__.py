"""Which engine makes the video (README: Engines), and what each one is: FactorPortrait's own
model, the public Wan2.2-Animate model driven by our conditioning, or the geometric engine that
warps the portrait's own pixels on the CPU. Apart from the engine code so that choosing one
(the `preview` command, the page) loads neither torch nor diffusers.

Each engine is described once here (``Engine``: what it is, whether it needs a model, its own
sampling defaults, its words on the page) and does its work behind one interface
(``protocol.EngineRuntime``, reached with ``engine_runtime``). Surfaces read these entries and
call that interface; no code outside this package compares engine names (tests/test_house.py)."""

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
    # Where its EngineRuntime lives ("module:Class"), imported on first use.
    runtime: str = ""
    # The engine selector's line on the page: what it is and is not.
    page_text: str = ""
    # What the estimate names as the model it runs (None: no model, the CPU's own speed).
    estimate_model: str | None = None
    # Generate asked of it with no model loaded: what to set (None: it needs none).
    missing_model: str | None = None
    # It reads training's prepared latents (``ablate --data``).
    reads_prepared_latents: bool = False
    # It has a tiny random checkpoint (``make-tiny-checkpoint --engine``).
    has_tiny_checkpoint: bool = False
    # The names of the extra preview videos it makes (EngineRuntime.preview_videos).
    preview_videos: tuple[str, ...] = ()

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
        runtime="factorportrait.engines.factorportrait:FactorPortraitEngine",
        page_text="FactorPortrait checkpoint: the paper's method (normal maps, ray maps, "
        "expression codes). No trained weights exist yet: without a trained checkpoint its "
        "output is labelled noise.",
        estimate_model="the 1.3B model",
        missing_model="No checkpoint is loaded, so there is nothing to generate with. "
        "Set FACTORPORTRAIT_CHECKPOINT (a pipeline folder or Hub id) and "
        "restart; previews work without one.",
        reads_prepared_latents=True,
        has_tiny_checkpoint=True,
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
        runtime="factorportrait.engines.wan_animate.engine:WanAnimateEngine",
        page_text="wan-animate: the public Wan2.2-Animate model driven by our skeleton and "
        "face-crop videos. Real weights, but NOT FactorPortrait (no camera control of its own); "
        "wants a large GPU.",
        estimate_model="Wan2.2-Animate-14B",
        missing_model="The wan-animate engine is not loaded, so there is nothing to generate "
        "with it. Set FACTORPORTRAIT_WAN_ANIMATE_CHECKPOINT "
        "(Wan-AI/Wan2.2-Animate-14B-Diffusers or a pipeline folder; it wants a large GPU) and "
        "restart; previews work without it.",
        has_tiny_checkpoint=True,
        preview_videos=("pose", "face"),
    ),
    GEOMETRY: Engine(
        GEOMETRY,
        "a geometric warp of the portrait's own pixels on the posed, driven template head "
        "(CPU; not diffusion, not FactorPortrait)",
        needs_model=False,
        diffusion=False,
        runtime="factorportrait.engines.geometry.engine:GeometryEngine",
        page_text="geometry: your photo's own pixels moved by the same head poses, expressions "
        "and cameras as the previews, on any CPU in seconds. A geometric warp: NOT diffusion, "
        "NOT FactorPortrait (the far side of the head, hair and the inside of the mouth are "
        "guessed).",
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


def engine_of_checkpoint(checkpoint: str) -> str:
    """The engine whose layout a local checkpoint folder has (its model_index.json); the
    first engine that needs a model (factorportrait) for anything else, a Hub id included."""
    with_models = [e.name for e in REGISTRY.values() if e.needs_model]
    for name in with_models:
        if engine_runtime(name).recognises(checkpoint):
            return name
    return with_models[0]


def engine_runtime(engine: str):
    """The engine's ``protocol.EngineRuntime`` (imported on first use; one per process)."""
    info = engine_info(engine)
    runtime = _RUNTIMES.get(info.name)
    if runtime is None:
        import importlib

        module, _, name = info.runtime.partition(":")
        runtime = _RUNTIMES.setdefault(info.name, getattr(importlib.import_module(module), name)())
    return runtime


_RUNTIMES: dict[str, object] = {}
