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


def add_keyframe(rows, after: int | None = None) -> list[list[float]]:
    """A new keyframe after keyframe ``after`` (0-based; default the last but one), halfway in
    time and in every value to the next one: the other keyframes keep their timing. An invalid
    table raises TrajectoryError (nothing is copied from a bad row)."""
    rows = _rows(rows)
    if not rows:
        return [[0.0, 0.0, 0.0, 1.0, 0.0, 30.0]]
    trajectory_from_table(rows)  # the reason, when the table is not valid
    rows = [[float(cell) for cell in row] for row in rows if not _blank(row)]
    if len(rows) == 1:  # the path gets its end: the same view at t = 1
        return [rows[0], [1.0, *rows[0][1:]]]
    index = len(rows) - 2 if after is None else min(max(int(after), 0), len(rows) - 2)
    middle = [round((a + b) / 2, 4) for a, b in zip(rows[index], rows[index + 1], strict=True)]
    return [*rows[: index + 1], middle, *rows[index + 1 :]]


def remove_keyframe(rows, index: int | None = None) -> list[list[float]]:
    """Without keyframe ``index`` (0-based; default the last). The others keep their timing,
    except that a removed end is replaced by its neighbour moved to t = 0 or t = 1 (a path
    starts at 0 and ends at 1). The last keyframe left stays."""
    rows = [row for row in _rows(rows) if not _blank(row)]
    if len(rows) <= 1:
        return rows
    index = len(rows) - 1 if index is None else min(max(int(index), 0), len(rows) - 1)
    del rows[index]
    if len(rows) == 1:
        rows[0][0] = 0.0
    elif index == 0:
        rows[0][0] = 0.0
    elif index == len(rows):
        rows[-1][0] = 1.0
    return rows


def _rows(rows) -> list[list]:
    if hasattr(rows, "values"):  # a pandas DataFrame from gr.Dataframe
        return rows.values.tolist()
    return [list(row) for row in rows or []]


def _blank(row) -> bool:
    return all(cell in (None, "") for cell in row)
