"""The page's settings as a request, and the handlers that keep the settings consistent: the
example each mode loads, the page's values as the core's settings and camera path, the mode
and engine choices, the estimate, the seed and the fast settings. None needs the model."""

from __future__ import annotations

import random
from pathlib import Path

import gradio as gr

from ..conditioning import ConditioningSettings
from ..engines import ENGINES, engine_info
from ..errors import InputError
from ..modes import Mode
from ..viewpoint import Trajectory
from . import texts
from .estimates import FAST, estimate_markdown

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLE_PORTRAIT = ASSETS / "example_portrait.jpg"
# The clip every example uses (one constant: the expressive clip can replace it here).
# The expressive clip the project made from the portrait (assets/README.md): expression transfer
# shows in every example.
EXAMPLE_DRIVING = ASSETS / "example_expressive.mp4"
# What each mode's example sets besides the inputs: a preset path or a novel view.
EXAMPLES = {
    Mode.FRONTAL_DYNAMIC: {},
    Mode.NOVEL_DYNAMIC: {"azimuth": 30.0, "elevation": 0.0, "distance": 1.0},
    Mode.CAMERA_ONLY: {"preset": "sweep"},
    Mode.ALL_DYNAMIC: {"preset": "orbit"},
}


DEFAULT_PRESET = "orbit"


def example_driving(mode) -> str | None:
    """The clip a mode's example loads: none for camera-only, which keeps the photo's own head
    and expression (a clip there would be tracked and shown, then ignored)."""
    return str(EXAMPLE_DRIVING) if Mode.parse(mode).drives_head else None


def user_error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def request_settings(
    mode: str, frames, fps, size, azimuth, elevation, distance
) -> ConditioningSettings:
    """The page's values as the core's settings (validated once, by the core)."""
    return ConditioningSettings(
        mode=Mode.parse(mode),
        frames=int(frames),
        fps=float(fps),
        height=int(size),
        width=int(size),
        novel_azimuth=float(azimuth),
        novel_elevation=float(elevation),
        novel_distance=float(distance),
    )


def request_trajectory(mode: Mode, trajectory_json: str | None) -> Trajectory | None:
    """The camera path a moving-camera mode flies (None for the others); an invalid keyframe
    table (the editor marks the field so) blocks the request with its reason."""
    if not mode.moving_camera:
        return None
    if not trajectory_json:
        raise InputError(texts.NO_CAMERA_PATH)
    if trajectory_json.startswith(texts.INVALID_TABLE_MARK):
        reason = trajectory_json.removeprefix(texts.INVALID_TABLE_MARK)
        raise InputError(texts.INVALID_TABLE.format(reason=reason))
    return Trajectory.from_json(trajectory_json)


def mode_changed(mode: str):
    """(camera-path group, novel-view group, mode list) for the chosen mode."""
    mode = Mode.parse(mode)
    return (
        gr.update(visible=mode.moving_camera),
        gr.update(visible=mode.novel_view),
        texts.mode_markdown(mode),
    )


def engine_changed(engine: str):
    """(engine list, pose video, face video) for the chosen engine: the two videos that drive
    wan-animate are shown only for it."""
    wan_animate = bool(engine_info(engine).preview_videos)  # its skeleton and face videos
    return (
        texts.engine_markdown(engine),
        gr.update(visible=wan_animate),
        gr.update(visible=wan_animate),
    )


def engine_settings(engine: str):
    """(steps, guidance, fps, size) as the chosen engine wants them by default: each engine's
    own defaults (engines.REGISTRY); steps and guidance greyed out for an engine that does not
    diffuse."""
    info = engine_info(engine if engine in ENGINES else ENGINES[0])
    size = info.default_size()
    note = None if info.diffusion else texts.NOT_DIFFUSION_SETTING
    return (
        gr.update(value=info.default_steps(), interactive=info.diffusion, info=note),
        gr.update(value=info.default_guidance(), interactive=info.diffusion, info=note),
        gr.update(value=info.default_fps()),
        gr.update(value=size) if size in texts.SIZES else gr.update(),
    )


def estimate_changed(frames, size, steps, guidance, engine=None) -> str:
    engine = engine if engine in ENGINES else ENGINES[0]
    return estimate_markdown(int(frames), int(size), int(steps), float(guidance), engine)


def random_seed() -> int:
    return random.randint(0, 2**31 - 1)


def fast_settings() -> tuple[int, int, int, float]:
    """(frames, size, steps, guidance) of a run that fits a free ZeroGPU call."""
    return FAST["frames"], FAST["size"], FAST["steps"], FAST["guidance"]
