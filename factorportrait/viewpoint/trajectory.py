"""Camera trajectories: keyframes around the head, validated and smoothly interpolated.

One JSON schema serves the presets in camera_presets/ and whatever the UI editor saves:

    {
      "version": 1,
      "name": "orbit",
      "description": "one line shown in the UI",
      "anchor": "portrait",            # or "head" (see below)
      "easing": "ease-in-out",         # or "linear" (default)
      "keyframes": [
        {"t": 0.0, "azimuth": 0, "elevation": 0, "distance": 1.0, "roll": 0, "fov": 30},
        ...
      ]
    }

``t`` is normalised time in [0, 1]: the first keyframe is at 0, the last at 1, strictly
increasing, so one trajectory samples to any number of frames. Angles are degrees and are not
wrapped (an orbit is 0 -> 360, not 0 -> 0). ``fov`` is the vertical field of view in degrees.

``anchor`` says what the numbers are relative to:
- "portrait": azimuth, elevation and roll are offsets from the portrait's own view and distance
  is a factor of the portrait camera's distance, so a preset starts from whatever view the photo
  was taken from. Presets use this.
- "head": absolute values in the head frame, distance in centimetres.

Interpolation is monotone cubic (PCHIP) per parameter: it passes through every keyframe, has a
continuous first derivative (no kinks) and never overshoots the keyframe values, so a path can
not leave the validated ranges between keyframes (elevation stays off the poles).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy.interpolate import PchipInterpolator

from ..config import CAMERA, LIMITS
from ..errors import InputError
from .geometry import intrinsics_from_fov, orbit_c2w

SCHEMA_VERSION = 1
PARAMETERS = ("azimuth", "elevation", "distance", "roll", "fov")

# Value ranges; the same numbers bound the UI sliders.
AZIMUTH_RANGE = (-720.0, 720.0)
ELEVATION_RANGE = (-89.0, 89.0)
ROLL_RANGE = (-180.0, 180.0)
FOV_RANGE = (5.0, 120.0)
RELATIVE_DISTANCE_RANGE = (0.25, 4.0)  # factor of the portrait camera's distance
ABSOLUTE_DISTANCE_RANGE = (10.0, 500.0)  # centimetres from the head centre


class TrajectoryError(InputError):
    """A trajectory that fails validation; the message names the offending field."""


_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Keyframe(BaseModel):
    model_config = _STRICT

    t: float = Field(ge=0.0, le=1.0, description="normalised time in [0, 1]")
    azimuth: float = Field(ge=AZIMUTH_RANGE[0], le=AZIMUTH_RANGE[1], description="degrees")
    elevation: float = Field(ge=ELEVATION_RANGE[0], le=ELEVATION_RANGE[1], description="degrees")
    distance: float = Field(gt=0.0, description="factor (anchor=portrait) or cm (anchor=head)")
    roll: float = Field(ge=ROLL_RANGE[0], le=ROLL_RANGE[1], description="degrees")
    fov: float = Field(ge=FOV_RANGE[0], le=FOV_RANGE[1], description="vertical, degrees")


@dataclass(frozen=True)
class CameraView:
    """One view around the head: absolute values, distance in centimetres."""

    azimuth: float = 0.0
    elevation: float = 0.0
    distance: float = CAMERA.distance_cm
    roll: float = 0.0
    fov: float = CAMERA.fov_deg


DEFAULT_VIEW = CameraView()


class Trajectory(BaseModel):
    """A validated camera trajectory (see the module docstring for the schema)."""

    model_config = _STRICT

    version: Literal[1]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: Annotated[str, Field(max_length=200, pattern=r"^[^\n\r]*$")] = ""
    anchor: Literal["portrait", "head"] = "portrait"
    easing: Literal["linear", "ease-in-out"] = "linear"
    keyframes: Annotated[list[Keyframe], Field(min_length=1, max_length=LIMITS.max_keyframes)]

    @model_validator(mode="after")
    def _check_keyframes(self) -> Trajectory:
        keys = self.keyframes
        if keys[0].t != 0.0:
            raise ValueError(f"keyframes[0].t: must be 0, got {keys[0].t}")
        if len(keys) > 1 and keys[-1].t != 1.0:
            raise ValueError(
                f"keyframes[{len(keys) - 1}].t: the last keyframe must be at 1, got {keys[-1].t}"
            )
        for i in range(1, len(keys)):
            if keys[i].t <= keys[i - 1].t:
                raise ValueError(
                    f"keyframes[{i}].t: times must increase strictly ({keys[i - 1].t} then {keys[i].t})"
                )
        low, high = (
            RELATIVE_DISTANCE_RANGE if self.anchor == "portrait" else ABSOLUTE_DISTANCE_RANGE
        )
        unit = "x the portrait distance" if self.anchor == "portrait" else "cm"
        for i, key in enumerate(keys):
            if not low <= key.distance <= high:
                raise ValueError(
                    f"keyframes[{i}].distance: {key.distance} is outside [{low}, {high}] {unit} "
                    f"(anchor={self.anchor})"
                )
        return self

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def static(
        cls,
        azimuth: float = 0.0,
        elevation: float = 0.0,
        distance: float = 1.0,
        roll: float = 0.0,
        fov: float = CAMERA.fov_deg,
        *,
        anchor: Literal["portrait", "head"] = "portrait",
        name: str = "static",
        description: str = "The camera holds still.",
    ) -> Trajectory:
        """A camera that does not move (one keyframe)."""
        return cls.from_dict(
            {
                "version": SCHEMA_VERSION,
                "name": name,
                "description": description,
                "anchor": anchor,
                "keyframes": [
                    {
                        "t": 0.0,
                        "azimuth": azimuth,
                        "elevation": elevation,
                        "distance": distance,
                        "roll": roll,
                        "fov": fov,
                    }
                ],
            }
        )

    @classmethod
    def from_dict(cls, data: object) -> Trajectory:
        # Round-trip through JSON so Python callers get exactly the JSON rules (strict types,
        # no NaN/inf) and the same messages as files do.
        try:
            text = json.dumps(data, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise TrajectoryError(f"trajectory: not JSON-serialisable ({exc})") from None
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str | bytes) -> Trajectory:
        size = len(text.encode() if isinstance(text, str) else text)
        if size > LIMITS.max_trajectory_bytes:
            raise TrajectoryError(
                f"trajectory: {size} bytes is over the {LIMITS.max_trajectory_bytes}-byte limit"
            )
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise TrajectoryError(_describe(exc)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> Trajectory:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise TrajectoryError(f"trajectory file {path}: {exc.strerror or exc}") from None
        if size > LIMITS.max_trajectory_bytes:
            raise TrajectoryError(
                f"trajectory file {path}: {size} bytes is over the "
                f"{LIMITS.max_trajectory_bytes}-byte limit"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrajectoryError(f"trajectory file {path}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(data)
        except TrajectoryError as exc:
            raise TrajectoryError(f"{path.name}: {exc}") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    # ------------------------------------------------------------------------------- sampling
    def sample(self, num_frames: int, base: CameraView = DEFAULT_VIEW) -> CameraPath:
        """Interpolate to ``num_frames`` absolute views (frame i at time i / (num_frames - 1)).

        ``base`` is the portrait's own view; it is ignored for anchor="head".
        """
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise InputError(f"frames: expected a positive integer, got {num_frames!r}")
        times = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
        if self.easing == "ease-in-out":
            times = times * times * (3.0 - 2.0 * times)  # smoothstep: starts and stops at rest
        values = {}
        key_times = np.array([k.t for k in self.keyframes])
        for name in PARAMETERS:
            key_values = np.array([getattr(k, name) for k in self.keyframes])
            if len(key_values) == 1:
                values[name] = np.full(num_frames, key_values[0])
            else:
                values[name] = PchipInterpolator(key_times, key_values)(times)
        if self.anchor == "portrait":
            values["azimuth"] = values["azimuth"] + base.azimuth
            values["elevation"] = values["elevation"] + base.elevation
            values["roll"] = values["roll"] + base.roll
            values["distance"] = values["distance"] * base.distance
            # Portrait-relative offsets can push an absolute angle past its range.
            for name, (low, high) in (("elevation", ELEVATION_RANGE), ("roll", ROLL_RANGE)):
                worst = values[name][np.argmax(np.abs(values[name]))]
                if not low <= worst <= high:
                    raise TrajectoryError(
                        f"{self.name}: {name} reaches {worst:.1f} degrees with the portrait's own "
                        f"{name} of {getattr(base, name):.1f} (allowed [{low}, {high}])"
                    )
        return CameraPath(times=times, **values)


@dataclass(frozen=True)
class CameraPath:
    """Absolute per-frame views (arrays of shape (F,)); distance in cm, angles in degrees."""

    times: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    distance: np.ndarray
    roll: np.ndarray
    fov: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    def view(self, index: int) -> CameraView:
        return CameraView(**{name: float(getattr(self, name)[index]) for name in PARAMETERS})

    def c2w(self) -> np.ndarray:
        """(F, 4, 4) camera-to-world, OpenCV cameras, head frame in cm."""
        return orbit_c2w(self.azimuth, self.elevation, self.distance, self.roll)

    def intrinsics(self, height: int, width: int) -> np.ndarray:
        """(F, 3, 3) pinhole K in pixels for frames of height x width."""
        return intrinsics_from_fov(self.fov, height, width)

    def cameras(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        return self.intrinsics(height, width), self.c2w()

    def as_dict(self) -> dict[str, list[float]]:
        return {name: getattr(self, name).tolist() for name in PARAMETERS}


def _describe(exc: ValidationError) -> str:
    """Pydantic's errors as one line per problem, each starting with the field's path."""
    lines = []
    for error in exc.errors(include_url=False):
        path = _format_location(error["loc"])
        message = error["msg"]
        if error["type"] == "value_error":  # our own validator: the message carries the path
            lines.append(message.removeprefix("Value error, "))
            continue
        if error["type"] == "json_invalid":
            lines.append(f"not valid JSON: {error.get('ctx', {}).get('error', message)}")
            continue
        if error["type"] == "missing":
            lines.append(f"{path}: required field is missing")
            continue
        value = error.get("input")
        shown = ""
        if isinstance(value, bool | int | float | str) and len(repr(value)) < 40:
            shown = f" (got {json.dumps(value) if not _is_nonfinite(value) else value})"
        lines.append(f"{path or 'trajectory'}: {message[0].lower()}{message[1:]}{shown}")
    return "; ".join(lines)


def _format_location(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _is_nonfinite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
