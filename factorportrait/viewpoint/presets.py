"""The trajectory presets shipped in camera_presets/ (one JSON file each, same schema as the
editor saves), and resolution of a user's ``--camera`` argument to a Trajectory."""

from __future__ import annotations

import re
from pathlib import Path

from .trajectory import Trajectory, TrajectoryError

PRESET_DIR = Path(__file__).resolve().parents[2] / "camera_presets"
_PRESET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> Trajectory:
    if not _PRESET_NAME.match(name) or not (PRESET_DIR / f"{name}.json").is_file():
        raise TrajectoryError(
            f"unknown camera preset {name!r}; available: {', '.join(preset_names())}"
        )
    return Trajectory.from_file(PRESET_DIR / f"{name}.json")


def load_presets() -> dict[str, Trajectory]:
    return {name: load_preset(name) for name in preset_names()}


def resolve_trajectory(preset_or_path: str | Path) -> Trajectory:
    """A preset name (e.g. ``orbit``) or the path of a trajectory JSON file."""
    text = str(preset_or_path)
    if _PRESET_NAME.match(text) and (PRESET_DIR / f"{text}.json").is_file():
        return load_preset(text)
    path = Path(text)
    if path.is_file():
        return Trajectory.from_file(path)
    raise TrajectoryError(
        f"camera: {text!r} is neither a preset ({', '.join(preset_names())}) nor a JSON file"
    )
