"""What a run will cost, as the page shows it before anyone presses Generate: each engine's own
estimate (``EngineRuntime.estimate``: the cost model of ``planning.cost`` for the diffusion
engines, the measured speed of the geometric one) in words, and the settings of a run that
fits a free ZeroGPU call."""

from __future__ import annotations

from ..engines import FACTORPORTRAIT, engine_runtime
from . import texts

# A run that fits a free ZeroGPU call (the page's "Fast settings" button).
FAST = {"frames": 33, "size": 384, "steps": 20, "guidance": 1.0}


def estimate(
    frames: int, size: int, steps: int, guidance: float, engine: str = FACTORPORTRAIT
) -> dict[str, float]:
    """The engine's estimate of a square video (``planning.cost``'s model for the diffusion
    engines, the measured speed for the geometric one), with the seconds to ask ZeroGPU for."""
    return engine_runtime(engine).estimate(frames, size, steps, guidance)


def estimate_markdown(
    frames: int, size: int, steps: int, guidance: float, engine: str = FACTORPORTRAIT
) -> str:
    e = estimate(frames, size, steps, guidance, engine)
    return texts.estimate_markdown(
        e["seconds"], e["gpu_gib"], e["zerogpu_s"], engine, e.get("gpu_gib_offload")
    )
