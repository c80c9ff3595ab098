"""Which engine makes the video (README: Engines): FactorPortrait's own model, or the public
Wan2.2-Animate model driven by our conditioning. Apart from the engine code so that choosing one
(the `preview` command, the page) loads neither torch nor diffusers."""

from __future__ import annotations

import os

from ..errors import InputError

WAN_ANIMATE = "wan-animate"
# The engines every surface offers; $FACTORPORTRAIT_ENGINE picks the default.
ENGINES = ("factorportrait", WAN_ANIMATE)
ENGINE_VARIABLE = "FACTORPORTRAIT_ENGINE"


def default_engine() -> str:
    """$FACTORPORTRAIT_ENGINE, or factorportrait."""
    return os.environ.get(ENGINE_VARIABLE, "").strip() or ENGINES[0]


def checked_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    return engine
