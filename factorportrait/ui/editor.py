"""The trajectory editor's data: a keyframe table (rows of t, azimuth, elevation, distance, roll,
fov) <-> the validated Trajectory the rest of the project uses."""

from __future__ import annotations

from ..viewpoint import Trajectory, TrajectoryError
from ..viewpoint.trajectory import PARAMETERS

COLUMNS = ["t", *PARAMETERS]


def table_from_trajectory(trajectory: Trajectory) -> list[list[float]]:
    return [[getattr(key, name) for name in COLUMNS] for key in trajectory.keyframes]


def trajectory_from_table(
    rows,
    *,
    easing: str = "linear",
    name: str = "custom",
    description: str = "Edited in the web demo.",
) -> Trajectory:
    """Rows from the UI table (lists, or a pandas DataFrame) -> a validated Trajectory."""
    if hasattr(rows, "values"):  # a pandas DataFrame from gr.Dataframe
        rows = rows.values.tolist()
    keyframes = []
    for index, row in enumerate(rows or []):
        if all(cell in (None, "") for cell in row):
            continue
        try:
            values = [float(cell) for cell in row]
        except (TypeError, ValueError):
            raise TrajectoryError(f"keyframe {index + 1}: every cell must be a number") from None
        if len(values) != len(COLUMNS):
            raise TrajectoryError(f"keyframe {index + 1}: expected {len(COLUMNS)} values")
        keyframes.append(dict(zip(COLUMNS, values, strict=True)))
    return Trajectory.from_dict(
        {
            "version": 1,
            "name": name,
            "description": description,
            "anchor": "portrait",
            "easing": easing,
            "keyframes": keyframes,
        }
    )


def add_keyframe(rows) -> list[list[float]]:
    """A new last keyframe (a copy of the last one) with the times spread evenly again."""
    rows = rows.values.tolist() if hasattr(rows, "values") else [list(r) for r in rows or []]
    if not rows:
        return [[0.0, 0.0, 0.0, 1.0, 0.0, 30.0]]
    rows.append(list(rows[-1]))
    return _spread_times(rows)


def remove_keyframe(rows) -> list[list[float]]:
    rows = rows.values.tolist() if hasattr(rows, "values") else [list(r) for r in rows or []]
    return _spread_times(rows[:-1]) if len(rows) > 1 else rows


def _spread_times(rows: list[list[float]]) -> list[list[float]]:
    count = len(rows)
    for i, row in enumerate(rows):
        row[0] = round(i / (count - 1), 4) if count > 1 else 0.0
    return rows
