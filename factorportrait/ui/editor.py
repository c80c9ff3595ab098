"""The camera-path editor: its data, a keyframe table (rows of t, azimuth, elevation, distance,
roll, fov) <-> the validated Trajectory the rest of the project uses, and its handlers (a preset
chosen, the table edited, keyframes added, removed and selected, a path file loaded or saved),
each returning what the 3D view, the thumbnail, the JSON and the messages show."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import gradio as gr

from ..viewpoint import Trajectory, TrajectoryError
from ..viewpoint.trajectory import PARAMETERS
from . import camera_view, texts
from .controls import user_error

if TYPE_CHECKING:
    from .service import Service

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


# ----------------------------------------------------------------------- its handlers
def path_name(trajectory: Trajectory, presets: dict[str, Trajectory]) -> str:
    """The preset a path is (same keyframes and easing), else "custom keyframes"."""
    for name, preset in presets.items():
        if preset.keyframes == trajectory.keyframes and preset.easing == trajectory.easing:
            return name
    return texts.CUSTOM_PATH


def path_figure(trajectory: Trajectory, selected: int = 0):
    """The 3D view of a path: the template head, the path, the keyframe cameras (``selected``,
    0-based, highlighted) and the reference camera."""
    return camera_view.camera_figure(trajectory, camera_view.template_head(), selected)


def path_thumbnail(trajectory: Trajectory, selected: int = 0):
    """What keyframe ``selected``'s camera sees: the template head's normal map."""
    return camera_view.keyframe_thumbnail(trajectory, camera_view.template_head(), selected)


def _selected(number, rows) -> int:
    """The selected keyframe (the page counts from 1) as a 0-based row index."""
    count = max(1, len(rows or []) if not hasattr(rows, "values") else len(rows.values))
    try:
        return min(max(int(number) - 1, 0), count - 1)
    except (TypeError, ValueError):
        return 0


def _path_outputs(trajectory: Trajectory, presets, selected: int = 0) -> tuple:
    """(3D view, trajectory JSON, editor message, thumbnail, preset menu) of a valid path."""
    return (
        path_figure(trajectory, selected),
        trajectory.to_json(),
        "",
        path_thumbnail(trajectory, selected),
        path_name(trajectory, presets),
    )


def counted_from_one(reason: str) -> str:
    """A trajectory error as the editor's user reads it: keyframes counted from 1, as the table's
    rows and "Selected keyframe" count them ("keyframes[1].distance" is "keyframe 2: distance";
    files and the API keep the 0-based JSON path)."""
    return re.sub(
        r"keyframes\[(\d+)\]\.(\w+)", lambda m: f"keyframe {int(m[1]) + 1}: {m[2]}", reason
    )


def _invalid_outputs(reason: str) -> tuple:
    """The same outputs for an invalid table: the view and thumbnail cleared (they would show
    a path that no longer matches), the JSON marked so Preview and Generate refuse, and the
    preset menu saying the table is no longer a preset."""
    reason = counted_from_one(reason)
    message = texts.warning(texts.INVALID_TABLE.format(reason=reason))
    return None, texts.INVALID_TABLE_MARK + reason, message, None, texts.CUSTOM_PATH


def preset_chosen(presets: dict[str, Trajectory], name: str):
    """A preset picked: (keyframe table, easing, 3D view, trajectory JSON, editor message,
    thumbnail, selected keyframe: 1, the one the view highlights); "custom keyframes" keeps
    the table as it is."""
    if name not in presets:
        return (gr.update(),) * 7
    trajectory = presets[name]
    figure, trajectory_json, message, thumbnail, _ = _path_outputs(trajectory, presets)
    return (
        table_from_trajectory(trajectory),
        trajectory.easing,
        figure,
        trajectory_json,
        message,
        thumbnail,
        1,
    )


def table_edited(rows, easing, selected=1, presets=None):
    """The table or easing edited: (3D view, trajectory JSON, editor message, thumbnail, preset
    menu). An invalid table clears the view and marks the JSON with the reason, so Preview and
    Generate say it instead of using the last valid path."""
    try:
        trajectory = trajectory_from_table(rows, easing=easing)
    except TrajectoryError as exc:
        return _invalid_outputs(str(exc))
    return _path_outputs(trajectory, presets or {}, _selected(selected, rows))


def keyframe_added(rows, easing, selected=1, presets=None):
    """Add keyframe (after the selected one, halfway to the next): (table, selected, then
    ``table_edited``'s outputs); an invalid table is left as it is, with the reason."""
    try:
        grown = add_keyframe(rows, _selected(selected, rows))
    except TrajectoryError as exc:
        return (gr.update(), gr.update(), *_invalid_outputs(str(exc)))
    chosen = min(_selected(selected, rows) + 2, len(grown))
    return (grown, chosen, *table_edited(grown, easing, chosen, presets))


def keyframe_removed(rows, easing, selected=1, presets=None):
    """Remove keyframe (the selected one): (table, selected, then ``table_edited``'s outputs)."""
    shrunk = remove_keyframe(rows, _selected(selected, rows))
    chosen = min(_selected(selected, rows) + 1, len(shrunk))
    return (shrunk, chosen, *table_edited(shrunk, easing, chosen, presets))


def keyframe_selected(rows, easing, selected=1):
    """Another keyframe selected: (3D view, thumbnail) with it highlighted."""
    try:
        trajectory = trajectory_from_table(rows, easing=easing)
    except TrajectoryError:
        return gr.update(), gr.update()
    index = _selected(selected, rows)
    return path_figure(trajectory, index), path_thumbnail(trajectory, index)


def keyframe_clicked(event: gr.SelectData) -> int:
    """A click in the table selects that cell's keyframe (counted from 1)."""
    index = event.index
    return int(index[0]) + 1 if isinstance(index, list | tuple) else 1


def path_loaded(file, presets=None):
    """A path file uploaded: (keyframe table, easing, 3D view, trajectory JSON, editor
    message, thumbnail, preset menu: the preset the file is, else "custom keyframes"); a bad
    file is a user error with the file's problem in words."""
    try:
        trajectory = Trajectory.from_file(file)
    except TrajectoryError as exc:
        raise user_error(exc) from None
    figure, trajectory_json, message, thumbnail, preset = _path_outputs(trajectory, presets or {})
    return (
        table_from_trajectory(trajectory),
        trajectory.easing,
        figure,
        trajectory_json,
        message,
        thumbnail,
        preset,
    )


def path_saved(service: Service, trajectory_json: str):
    """Save path: the trajectory written to a fresh request folder, offered as a file."""
    try:
        trajectory = Trajectory.from_json(trajectory_json)
    except TrajectoryError as exc:
        raise user_error(exc) from None
    path = service.request_dir() / f"{trajectory.name}.json"
    path.write_text(trajectory.to_json())
    return gr.update(value=str(path), visible=True)
