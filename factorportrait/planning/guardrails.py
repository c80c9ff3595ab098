"""Trained ranges and the warnings when a request leaves them.

A checkpoint learns from the head motions and camera views its training data holds; asked for
more, it extrapolates. ``train`` records what its data covered (``ranges_from_samples`` over the
prepared samples' metadata, saved with ``save_trained_ranges`` as ``trained_ranges.json`` in the
checkpoint folder), and ``preview``, ``generate`` and the web demo compare each request against
it (``request_warnings``). A checkpoint without the file is judged against ``TrainedRanges()``.

Every quantity is measured the same way for a training sample and for a request (prepare can
call ``camera_offsets`` and ``head_turns`` itself):

- head yaw and pitch: the head's turn away from its pose in the first frame, seen from the
  reference camera (the portrait's at inference), so a moving camera is no head turn;
- camera azimuth and elevation: degrees round the head from the reference camera's own view,
  so a path judged around a portrait taken from above starts at 0, not at the photo's angle;
- camera distance: a ratio of the reference camera's distance to the head centre;
- field of view: vertical, in degrees.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..config import CAMERA
from ..errors import InputError
from ..viewpoint import Trajectory
from ..viewpoint.paths import view_of_camera

TRAINED_RANGES_FILE = "trained_ranges.json"
TRAINED_RANGES_VERSION = 1
# Views come back from cameras through float arithmetic: a value asked for at a range's very
# edge (the demo's azimuth slider stops at -60) must not read as a hair outside it.
ANGLE_TOLERANCE_DEG = 0.5
RATIO_TOLERANCE = 0.005

# The prepared-sample metadata ``ranges_from_samples`` reads (strings or numbers).
SAMPLE_KEYS = {
    "head_yaw_deg": ("head_yaw_deg_min", "head_yaw_deg_max"),
    "head_pitch_deg": ("head_pitch_deg_min", "head_pitch_deg_max"),
    "camera_azimuth_deg": ("camera_azimuth_deg_min", "camera_azimuth_deg_max"),
    "camera_elevation_deg": ("camera_elevation_deg_min", "camera_elevation_deg_max"),
    "camera_distance_ratio": ("camera_distance_ratio_min", "camera_distance_ratio_max"),
    "fov_deg": ("fov_deg", "fov_deg"),  # one field of view per sample
}


@dataclass(frozen=True)
class TrainedRanges:
    """(low, high) of each quantity a checkpoint was trained on (see the module docstring for
    how each is measured). The defaults are assumed for a checkpoint that records none: the
    angles a talking-head dataset covers, the distances of the demo's novel-view slider, and
    the one field of view every training sample is framed with."""

    head_yaw_deg: tuple[float, float] = (-45.0, 45.0)
    head_pitch_deg: tuple[float, float] = (-30.0, 30.0)
    camera_azimuth_deg: tuple[float, float] = (-60.0, 60.0)
    camera_elevation_deg: tuple[float, float] = (-30.0, 30.0)
    camera_distance_ratio: tuple[float, float] = (0.6, 1.6)
    fov_deg: tuple[float, float] = (CAMERA.fov_deg, CAMERA.fov_deg)

    def __post_init__(self):
        for item in fields(self):
            low, high = (float(v) for v in getattr(self, item.name))
            if not (math.isfinite(low) and math.isfinite(high) and low <= high):
                raise ValueError(f"{item.name}: ({low}, {high}) is not a range")
            object.__setattr__(self, item.name, (low, high))

    def to_dict(self) -> dict[str, list[float]]:
        return {name: list(pair) for name, pair in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> TrainedRanges:
        """From ``to_dict``'s form; a quantity left out keeps its default."""
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known - {"version"}
        if unknown:
            raise ValueError(f"unknown trained ranges: {', '.join(sorted(unknown))}")
        return cls(**{name: tuple(data[name]) for name in known if name in data})


def save_trained_ranges(ranges: TrainedRanges, folder: str | Path) -> Path:
    """Write ``trained_ranges.json`` into a checkpoint folder; returns its path."""
    path = Path(folder) / TRAINED_RANGES_FILE
    record = {"version": TRAINED_RANGES_VERSION, **ranges.to_dict()}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_trained_ranges(folder: str | Path) -> TrainedRanges | None:
    """A checkpoint folder's trained ranges; None when it records none."""
    path = Path(folder) / TRAINED_RANGES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version") != TRAINED_RANGES_VERSION:
            raise ValueError(f"version {data.get('version')!r} is not {TRAINED_RANGES_VERSION}")
        return TrainedRanges.from_dict(data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: not a trained-ranges file ({exc})") from None


def ranges_of_checkpoint(pipeline) -> TrainedRanges | None:
    """What a loaded pipeline's checkpoint was trained on (its trained_ranges.json), when it is
    a local folder that says; None otherwise (judged against ``TrainedRanges()``)."""
    folder = getattr(pipeline, "name_or_path", None)
    if not folder or not Path(folder).is_dir():  # no checkpoint, or one from the Hub
        return None
    return load_trained_ranges(folder)


class TrainedRangeWarning(UserWarning):
    """A request leaves what the checkpoint was trained on (the Python API's warning)."""


def ranges_from_samples(rows: list[dict]) -> TrainedRanges:
    """The ranges a set of prepared samples covers: each quantity from the lowest minimum to
    the highest maximum over the rows. Rows without every key of SAMPLE_KEYS (or with a value
    that is not a finite number) are skipped; with none left, the defaults."""
    lows: dict[str, list[float]] = {name: [] for name in SAMPLE_KEYS}
    highs: dict[str, list[float]] = {name: [] for name in SAMPLE_KEYS}
    for row in rows:
        try:
            values = {
                name: (float(row[low_key]), float(row[high_key]))
                for name, (low_key, high_key) in SAMPLE_KEYS.items()
            }
        except (KeyError, TypeError, ValueError):
            continue
        if not all(math.isfinite(v) for pair in values.values() for v in pair):
            continue
        for name, (low, high) in values.items():
            lows[name].append(low)
            highs[name].append(high)
    if not lows["fov_deg"]:
        return TrainedRanges()
    return TrainedRanges(**{name: (min(lows[name]), max(highs[name])) for name in SAMPLE_KEYS})


# ------------------------------------------------------------------------------ measuring
def camera_offsets(
    c2w: np.ndarray, K: np.ndarray, reference_c2w: np.ndarray, height: int
) -> dict[str, np.ndarray]:
    """Per camera (F,): azimuth and elevation in degrees from the reference camera's view
    (azimuth wrapped to [-180, 180)), distance as a ratio of the reference's, and the vertical
    field of view in degrees (from K's focal length and the image height)."""
    reference = view_of_camera(np.asarray(reference_c2w, np.float64))
    views = [view_of_camera(np.asarray(camera, np.float64)) for camera in c2w]
    azimuth = np.array([v.azimuth for v in views]) - reference.azimuth
    return {
        "azimuth": (azimuth + 180.0) % 360.0 - 180.0,
        "elevation": np.array([v.elevation for v in views]) - reference.elevation,
        "distance": np.array([v.distance for v in views]) / reference.distance,
        "fov": np.degrees(2 * np.arctan(height / 2 / np.asarray(K)[:, 1, 1])),
    }


def head_turns(head_pose: np.ndarray, camera_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch) per frame (F,), degrees: the head's rotation away from its first frame's,
    about the camera's vertical and horizontal axes (one fixed camera: the reference)."""
    rotations = np.asarray(head_pose, np.float64)[:, :3, :3]
    camera = np.asarray(camera_c2w, np.float64)[:3, :3]
    # The turn since frame 0 (world frame), expressed in the camera's axes.
    turns = camera.T @ rotations @ rotations[0].T @ camera
    yaw, pitch, _ = Rotation.from_matrix(turns).as_euler("YXZ", degrees=True).T
    return yaw, pitch


# ------------------------------------------------------------------------------- warnings
def request_warnings(
    cond, trajectory: Trajectory | None, ranges: TrainedRanges | None
) -> list[str]:
    """Sentences for the user when a request's cameras or driven head leave what the
    checkpoint was trained on, or its camera path does not start at the portrait's own view.
    ``cond`` is the request's Conditioning; ``ranges`` None means ``TrainedRanges()``."""
    ranges = ranges or TrainedRanges()
    reference = cond.reference_c2w if cond.reference_c2w is not None else cond.c2w[0]
    warnings = []
    if np.linalg.norm(np.asarray(reference)[:3, 3]) < 1e-6:  # no camera around the head to judge
        return warnings
    offsets = camera_offsets(cond.c2w, cond.K, reference, cond.height)
    for name, what, trained in (
        ("azimuth", "azimuth", ranges.camera_azimuth_deg),
        ("elevation", "elevation", ranges.camera_elevation_deg),
    ):
        if _outside(offsets[name], trained, ANGLE_TOLERANCE_DEG):
            warnings.append(
                f"The camera goes to {what} {_span(offsets[name])} degrees from the portrait's "
                f"view; the model was trained on {_span(trained)}."
            )
    if _outside(offsets["distance"], ranges.camera_distance_ratio, RATIO_TOLERANCE):
        warnings.append(
            f"The camera goes to {_span(offsets['distance'], '.2f')} times the portrait's "
            f"distance; the model was trained on {_span(ranges.camera_distance_ratio, '.2f')}."
        )
    if _outside(offsets["fov"], ranges.fov_deg, ANGLE_TOLERANCE_DEG):
        warnings.append(
            f"The field of view goes to {_span(offsets['fov'])} degrees; the model was trained "
            f"on {_span(ranges.fov_deg)}."
        )
    if cond.mode.drives_head:  # else the head holds the photo's pose: nothing turns it
        yaw, pitch = head_turns(cond.head_pose, reference)
        for values, verb, trained in (
            (yaw, "turns", ranges.head_yaw_deg),
            (pitch, "nods", ranges.head_pitch_deg),
        ):
            if _outside(values, trained, ANGLE_TOLERANCE_DEG):
                warnings.append(
                    f"The driven head {verb} {_span(values)} degrees; the model was trained "
                    f"on {_span(trained)}."
                )
    if trajectory is not None and cond.mode.moving_camera:
        first = trajectory.keyframes[0]
        if trajectory.anchor == "head":
            warnings.append(
                "This path is absolute (anchor: head): its first view need not be "
                "the portrait's own, and the model sees the photo from there."
            )
        elif (
            abs(first.azimuth) > 2
            or abs(first.elevation) > 2
            or abs(first.roll) > 2
            or abs(first.distance - 1) > 0.05
            or abs(first.fov - CAMERA.fov_deg) > 2
        ):
            warnings.append(
                "The path starts away from the portrait's own view; the first "
                "frame will not look like the photo."
            )
    return warnings


def _outside(values: np.ndarray, trained: tuple[float, float], tolerance: float) -> bool:
    return bool(values.min() < trained[0] - tolerance or values.max() > trained[1] + tolerance)


def _span(values, spec: str = ".0f") -> str:
    """ "LOW to HIGH", rounded as ``spec`` says (and never "-0")."""

    def number(value: float) -> str:
        text = f"{value:{spec}}"
        return text.lstrip("-") if float(text) == 0 else text

    return f"{number(float(np.min(values)))} to {number(float(np.max(values)))}"
