"""The one interface every engine implements (ARCHITECTURE.md: Engines). The CLI, the web
service, the HTTP API and ``ablate`` hold an engine's model and call these methods; none of
them asks which engine it is. Each engine's room has one subclass (``engines.factorportrait``,
``engines.wan_animate.engine``, ``engines.geometry.engine``), reached by name through
``engines.engine_runtime``, which imports it only when it is asked for (the registry itself
loads no torch)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import Engine

# report(done, total, stage): a run's progress in the units of its stage (denoising steps, or
# the geometric engine's frames) and the stage's name (ui.service.STAGES).
Report = Callable[[int, int, str], None]


class Stopped(Exception):
    """A run asked to stop (its ``should_stop`` said so) after ``done`` of ``total`` units."""

    def __init__(self, done: int, total: int):
        super().__init__(f"stopped after {done} of {total}")
        self.done, self.total = done, total


class EngineRuntime(ABC):
    """What an engine does. ``model`` is whatever ``load`` returned (None for an engine that
    needs none); every method takes it rather than holding it, so one runtime serves every
    request and no request mutates shared state. The abstract methods are what each engine
    must say for itself; the rest have the common answer."""

    info: Engine
    # The diffusers pipeline class a checkpoint folder of this engine names in its
    # model_index.json (None: the engine has no checkpoints).
    pipeline_class: str | None = None

    # ---------------------------------------------------------------- before anything runs
    def request(self, settings):
        """(settings, notes): the request as this engine makes it, checked before anything
        loads (wan-animate: its own frame rate and window lengths); notes say what changed."""
        return settings, []

    @abstractmethod
    def estimate(self, frames: int, size: int, steps: int, guidance: float) -> dict:
        """{"seconds", "gpu_gib", "zerogpu_s"} (and optional "gpu_gib_offload") for a square
        video: the cost model (``planning.cost``) or this engine's measured speed."""

    def total_units(self, frames: int, steps: int) -> int:
        """How many units ``generate`` reports for a request (steps over all its windows,
        or frames)."""
        return steps

    # ------------------------------------------------------------------------- its model
    def load(self, checkpoint: str | None, *, device: str = "auto", **options):
        """The model for ``checkpoint`` (None: this engine needs none). ``options`` are the
        engine's own (wan-animate: offload, lora, ...); others ignore them."""
        return None

    @abstractmethod
    def status_markdown(self, model, checkpoint: str | None, *, cuda: bool) -> str:
        """One line for the page: what results of this engine are made by (model, device)."""

    @abstractmethod
    def describe(self, model) -> str:
        """One line for the command line: which engine made a video, and what it is not."""

    def notices(self, model, cond=None) -> list[str]:
        """What to tell a command-line user before the run: an untrained or tiny random model
        makes noise (and says so); how the request's frames will be made."""
        return []

    def device(self, model) -> str:
        """Where it runs, in words."""
        return "the CPU"

    def make_tiny_checkpoint(self, folder: Path, seed: int = 0) -> str | None:
        """Write a tiny random checkpoint of this engine's layout; its one-line description
        (None: this engine has no model to make)."""
        return None

    def recognises(self, checkpoint: str) -> bool:
        """Whether a local checkpoint folder is of this engine's layout (``ablate``): its
        model_index.json names ``pipeline_class``."""
        if self.pipeline_class is None:
            return False
        try:
            index = json.loads((Path(checkpoint) / "model_index.json").read_text())
            return index.get("_class_name") == self.pipeline_class
        except (OSError, json.JSONDecodeError, AttributeError):
            return False

    # ----------------------------------------------------------------------- per request
    def warnings(self, cond, trajectory, model) -> list[str]:
        """What the user should know about this request with this engine (out of a
        checkpoint's trained ranges; what the engine cannot honour of the mode)."""
        return []

    def preview_videos(self, cond, model) -> dict[str, np.ndarray]:
        """Extra preview videos by name (wan-animate: "pose" and "face", the two videos it is
        driven by); none by default."""
        return {}

    def control_video(self, cond) -> np.ndarray:
        """(F, H, W, 3) uint8: what drove a result, shown beside it (the normal maps)."""
        return cond.normals_rgb()

    @abstractmethod
    def generate(
        self,
        model,
        cond,
        *,
        steps: int,
        guidance: float,
        seed: int,
        report: Report | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """(F, H, W, 3) uint8, already labelled with what made it (burnt into every frame).
        ``report`` hears each unit as it finishes; ``should_stop`` is asked before each and
        raises Stopped when it says so."""


def diffusion_callback(total: int, steps: int, report, should_stop):
    """diffusers' ``callback_on_step_end`` for a run of ``total`` steps in windows of
    ``steps``: asks ``should_stop`` (Stopped after the step it is at), reports each step, and
    the decoding after each window's last step."""
    report = report or (lambda done, total, stage: None)
    done = 0  # over every window (the callback's own index restarts with each)

    def on_step(pipe, step, timestep, tensors):
        nonlocal done
        if should_stop is not None and should_stop():
            raise Stopped(done + 1, total)
        done += 1
        report(done, total, "denoising")
        if done % steps == 0:  # the window's last step: its frames are decoded next
            report(done, total, "decoding")
        return tensors

    return on_step
