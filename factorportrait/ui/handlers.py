"""The web demo's event handlers, callable without a page: each takes what its Gradio event
passes (component values, a request, a progress reporter) and returns what its outputs show.
InputError becomes a Gradio error with the same sentence. Handlers that need the loaded model
are methods of ``Handlers`` (bound to one Service); the camera-path editor's are plain
functions. blocks.py lays out the page and wires these to its components."""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr

from ..conditioning import ConditioningSettings
from ..engines import ENGINES, engine_info
from ..errors import InputError
from ..modes import Mode
from ..pipelines.generation import GenerationSettings
from ..viewpoint import Trajectory, TrajectoryError
from . import camera_view, editor, texts
from .service import (
    FAST,
    GenerationStopped,
    Service,
    estimate,
    estimate_markdown,
)
from .uploads import Refused

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


def path_name(trajectory: Trajectory, presets: dict[str, Trajectory]) -> str:
    """The preset a path is (same keyframes and easing), else "custom keyframes"."""
    for name, preset in presets.items():
        if preset.keyframes == trajectory.keyframes and preset.easing == trajectory.easing:
            return name
    return texts.CUSTOM_PATH


def view_name(azimuth, elevation, distance) -> str:
    return f"azimuth {float(azimuth):g}°, elevation {float(elevation):g}°, {float(distance):g}×"


def request_heading(
    mode: Mode, trajectory: Trajectory | None, presets, azimuth, elevation, distance
) -> str:
    """The summary's first words: the mode and its path (moving camera) or view (novel)."""
    path = path_name(trajectory, presets) if trajectory is not None else None
    view = view_name(azimuth, elevation, distance) if mode.novel_view else None
    return texts.summary_heading(mode, path, view)


# ------------------------------------------------------------ camera-path editor handlers
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
        editor.table_from_trajectory(trajectory),
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
        trajectory = editor.trajectory_from_table(rows, easing=easing)
    except TrajectoryError as exc:
        return _invalid_outputs(str(exc))
    return _path_outputs(trajectory, presets or {}, _selected(selected, rows))


def keyframe_added(rows, easing, selected=1, presets=None):
    """Add keyframe (after the selected one, halfway to the next): (table, selected, then
    ``table_edited``'s outputs); an invalid table is left as it is, with the reason."""
    try:
        grown = editor.add_keyframe(rows, _selected(selected, rows))
    except TrajectoryError as exc:
        return (gr.update(), gr.update(), *_invalid_outputs(str(exc)))
    chosen = min(_selected(selected, rows) + 2, len(grown))
    return (grown, chosen, *table_edited(grown, easing, chosen, presets))


def keyframe_removed(rows, easing, selected=1, presets=None):
    """Remove keyframe (the selected one): (table, selected, then ``table_edited``'s outputs)."""
    shrunk = editor.remove_keyframe(rows, _selected(selected, rows))
    chosen = min(_selected(selected, rows) + 1, len(shrunk))
    return (shrunk, chosen, *table_edited(shrunk, easing, chosen, presets))


def keyframe_selected(rows, easing, selected=1):
    """Another keyframe selected: (3D view, thumbnail) with it highlighted."""
    try:
        trajectory = editor.trajectory_from_table(rows, easing=easing)
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
        editor.table_from_trajectory(trajectory),
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


# ------------------------------------------------------------------- settings handlers
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


# ------------------------------------------------------------------- request handlers
MAX_SESSIONS_KEPT = 256
# What each watched input is called in an "out of date" note.
WATCHED_INPUTS = (
    "portrait",
    "driving clip",
    "mode",
    "camera path",
    "view",
    "video settings",
    "engine",
)


def preview_request(portrait, driving, *settings) -> tuple:
    """What a preview is made of, comparable with the page's inputs later: each upload by its
    file name and size (Gradio serves one file under several paths: a copy in its cache), the
    settings as numbers and text."""

    def media(path):
        if not path:
            return None
        try:
            return Path(path).name, Path(path).stat().st_size
        except OSError:
            return Path(path).name, None

    def value(setting):
        return float(setting) if isinstance(setting, int | float) else setting

    return (media(portrait), media(driving), *(value(setting) for setting in settings))


@dataclass
class SessionState:
    """What one browser session's page shows, kept here rather than in a gr.State (a State
    makes every page hold a heartbeat connection open)."""

    engine_videos: tuple[str | None, str | None] = (None, None)
    preview_error: str | None = None  # the last preview's error (it replaces the summary)
    result_note: str | None = None  # the last result's note, while it is up to date
    run: RunState | None = None  # the generation running now
    queued: bool = False  # Generate clicked, its run not started yet (waiting in the queue)
    result_video: str | None = None  # the last run's result (the download button's file)
    run_error: bool = False  # the run note shows an error (a valid preview or example clears it)
    # upload slot -> the reason its last file was refused (kept while the slot is emptied)
    refusals: dict[str, str] = field(default_factory=dict)
    # what the last preview was made of (``preview_request``): a preview that lands after the
    # page's inputs changed is marked out of date
    preview_request: tuple | None = None
    preview_summary: str | None = None


@dataclass
class RunState:
    """A running generation's stage and step, written by the service's progress callback."""

    stage: str = "loading"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    cancelling: bool = False
    changed: threading.Event = field(default_factory=threading.Event)


class Handlers:
    """The handlers that use the loaded model, bound to one Service (and the presets)."""

    def __init__(self, service: Service, presets: dict[str, Trajectory]):
        self.service = service
        self.presets = presets
        # Per browser session, bounded: the oldest sessions are forgotten.
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._sessions_lock = threading.Lock()
        # ``generate`` as it runs on a device: blocks.py wraps it with the Space's spaces.GPU.
        self.on_device = self.generate
        # Example previews, computed once per example and settings, in a folder the request
        # sweep leaves alone.
        self._example_previews: dict[str, tuple] = {}
        self._example_lock = threading.Lock()

    def session(self, request: gr.Request | None) -> SessionState:
        key = request.session_hash if request is not None else ""
        with self._sessions_lock:
            state = self._sessions.get(key)
            if state is None:
                state = self._sessions[key] = SessionState()
            self._sessions.move_to_end(key)
            while len(self._sessions) > MAX_SESSIONS_KEPT:
                self._sessions.popitem(last=False)
            return state

    # ---------------------------------------------------------------------- uploads
    def portrait_uploaded(self, path, request: gr.Request = None):
        """(slot, overlay, note) for the uploaded portrait; no face is a note, not an error. A
        refused file leaves the slot and its reason stays beside it until the input changes."""
        return self._uploaded("portrait", path, self.service.track_photo, request)

    def driving_uploaded(self, path, request: gr.Request = None):
        """(slot, overlay, note) for the uploaded driving clip, as ``portrait_uploaded``."""
        return self._uploaded("driving", path, self.service.track_clip, request)

    def _uploaded(self, slot: str, path, track, request):
        refusals = self.session(request).refusals
        if isinstance(path, Refused):
            # The slot is emptied (which fires this handler again, with None: the note stays).
            refusals[slot] = path.reason
            return None, None, texts.warning(path.reason)
        if path is None and refusals.pop(slot, None) is not None:
            return gr.update(), None, gr.update()
        refusals.pop(slot, None)
        try:
            return gr.update(), *track(path)
        except InputError as exc:
            return gr.update(), None, texts.warning(str(exc))

    def uploads_settled(
        self, portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames,
        fps, size,
    ) -> None:  # fmt: skip
        """After an upload: the uploads tracked for the page's settings in the background, so
        the first Preview does not track the clip (``Service.track_in_background``). Returns
        at once; nothing it meets reaches the page (the Preview says what is wrong)."""
        if isinstance(portrait, Refused) or isinstance(driving, Refused):
            return
        try:
            settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = request_trajectory(settings.mode, trajectory_json)
        except Exception:  # work done ahead: the Preview reports what is wrong
            return
        self.service.track_in_background(portrait, driving, settings, trajectory)

    # ----------------------------------------------------------------------- editor
    def preset_chosen(self, name):
        return preset_chosen(self.presets, name)

    def table_edited(self, rows, easing, selected=1):
        return table_edited(rows, easing, selected, self.presets)

    def keyframe_added(self, rows, easing, selected=1):
        return keyframe_added(rows, easing, selected, self.presets)

    def keyframe_removed(self, rows, easing, selected=1):
        return keyframe_removed(rows, easing, selected, self.presets)

    def path_loaded(self, file):
        return path_loaded(file, self.presets)

    def path_saved(self, trajectory_json):
        return path_saved(self.service, trajectory_json)

    # ------------------------------------------------------------------ honest state
    def inputs_changed(self, what: str, request: gr.Request = None):
        """An input a preview or result depends on changed: (normals, rays, tracking, strip,
        summary, result note, pose, face). The preview videos are cleared and the summary says
        they are out of date; a result stays, its note marked out of date."""
        state = self.session(request)
        note = gr.update()
        if state.result_note is not None and state.run is None:
            note = texts.stale_result(what, state.result_note)
            state.result_note = None  # marked once; a later change keeps the mark
        state.preview_error = None
        return (None, None, None, None, texts.stale_preview(what), note, None, None)

    # ---------------------------------------------------------------------- preview
    def preview(
        self,
        portrait,
        driving,
        mode,
        trajectory_json,
        azimuth,
        elevation,
        distance,
        frames,
        fps,
        size,
        engine=None,
        request: gr.Request = None,
    ):
        """Everything the model is conditioned on, as videos (CPU, seconds), with a summary
        that names the mode and its path or view; for wan-animate the pose and face videos
        are kept for ``preview_settled`` (not part of the HTTP API). An error is raised (API
        callers see it) and kept for ``preview_settled`` to put in place of the summary."""
        state = self.session(request)
        state.preview_error = None
        state.preview_request = preview_request(
            portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames, fps,
            size, engine,
        )  # fmt: skip
        try:
            settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = request_trajectory(settings.mode, trajectory_json)
            result = self.service.preview(
                portrait, driving, settings, trajectory, engine=engine or None
            )
        except InputError as exc:
            state.preview_error = str(exc)
            state.engine_videos = (None, None)
            raise user_error(exc) from None
        state.engine_videos = (
            (str(result.pose), str(result.face)) if result.pose is not None else (None, None)
        )
        heading = request_heading(
            settings.mode, trajectory, self.presets, azimuth, elevation, distance
        )
        summary = texts.with_warnings(f"{heading} {result.summary}", result.warnings)
        state.preview_summary = summary
        return (
            str(result.normals),
            str(result.rays),
            str(result.tracking),
            str(result.strip),
            summary,
        )

    def preview_settled(
        self, portrait=None, driving=None, mode=None, trajectory_json=None, azimuth=None,
        elevation=None, distance=None, frames=None, fps=None, size=None, engine=None,
        request: gr.Request = None,
    ):  # fmt: skip
        """After a preview, given the page's inputs as they are now: (pose, face, normals,
        rays, tracking, strip, summary, run note, Generate). On success the wan-animate videos
        (or None), the summary marked out of date when the inputs changed while it was made,
        an old run error cleared and Generate as the engine allows; after an error everything
        cleared and the error in place of the summary (never before the old text)."""
        state = self.session(request)
        if state.preview_error is not None:
            error = texts.error_note(state.preview_error)
            return (None, None, None, None, None, None, error, gr.update(), gr.update())
        summary = gr.update()
        now = preview_request(
            portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames, fps,
            size, engine,
        )  # fmt: skip
        if state.preview_request is not None and now != state.preview_request:
            summary = texts.superseded_preview(state.preview_summary or "")
        note, button = self.errors_cleared(engine, request)
        return (*state.engine_videos, *(gr.update(),) * 4, summary, note, button)

    def errors_cleared(self, engine=None, request: gr.Request = None):
        """(run note, Generate) once valid inputs are shown (a preview, an example): an old
        run error leaves the note; Generate follows the engine unless a run is going."""
        state = self.session(request)
        note = gr.update()
        if state.run_error and state.run is None:
            note, state.run_error = "", False
        if state.run is not None or state.queued:
            return note, gr.update()
        return note, self.generate_button(engine)

    def engine_videos(self, request: gr.Request = None):
        """The pose and face videos of this session's last preview (None: nothing to show)."""
        return self.session(request).engine_videos

    # --------------------------------------------------------------------- examples
    def example_chosen(self, mode: str):
        """One mode's example: (portrait, driving, mode, preset menu, table, easing, 3D view,
        trajectory JSON, editor message, thumbnail, azimuth, elevation, distance, camera-path
        group, novel-view group, mode list)."""
        mode = Mode.parse(mode)
        example = EXAMPLES[mode]
        preset = example.get("preset", DEFAULT_PRESET if DEFAULT_PRESET in self.presets else None)
        trajectory = self.presets[preset] if preset else next(iter(self.presets.values()))
        table, easing, figure, trajectory_json, message, thumbnail, _ = preset_chosen(
            self.presets, path_name(trajectory, self.presets)
        )
        return (
            str(EXAMPLE_PORTRAIT),
            example_driving(mode),
            mode.value,
            path_name(trajectory, self.presets),
            table,
            easing,
            figure,
            trajectory_json,
            message,
            thumbnail,
            example.get("azimuth", 30.0),
            example.get("elevation", 0.0),
            example.get("distance", 1.0),
            *mode_changed(mode.value),
        )

    def example_preview(
        self, mode, trajectory_json, azimuth, elevation, distance, frames, fps, size, engine=None,
        request: gr.Request = None,
    ):  # fmt: skip
        """The example's preview, computed once per example and settings in this process and
        reused after: the preview outputs (normals, rays, tracking, strip, summary)."""
        key = hashlib.sha256(
            repr((mode, trajectory_json, azimuth, elevation, distance, frames, fps, size, engine))
            .encode()
        ).hexdigest()[:16]  # fmt: skip
        with self._example_lock:
            cached = self._example_previews.get(key)
            if cached is None:
                outputs = self.preview(
                    str(EXAMPLE_PORTRAIT), example_driving(mode), mode, trajectory_json,
                    azimuth, elevation, distance, frames, fps, size, engine, request,
                )  # fmt: skip
                folder = self.service.output_root / "examples" / key
                folder.mkdir(parents=True, exist_ok=True)
                kept = [shutil.copy(path, folder / Path(path).name) for path in outputs[:4]]
                videos = self.session(request).engine_videos
                kept_videos = tuple(
                    shutil.copy(path, folder / Path(path).name) if path else None for path in videos
                )
                cached = self._example_previews[key] = (*kept, outputs[4], kept_videos)
        state = self.session(request)
        state.preview_error = None
        state.engine_videos = cached[5]
        state.preview_request = preview_request(
            str(EXAMPLE_PORTRAIT), example_driving(mode), mode, trajectory_json, azimuth,
            elevation, distance, frames, fps, size, engine,
        )  # fmt: skip
        state.preview_summary = cached[4]
        return cached[:5]

    def four_modes(
        self, portrait, driving, trajectory_json, azimuth, elevation, distance, frames, fps,
        size, engine=None,
    ):  # fmt: skip
        """The four modes previewed for the current inputs: (four strips, in ``Mode`` order,
        and a note). A mode the inputs cannot make (no clip for a driven mode) is left empty
        and the note says why."""
        strips, notes = [], []
        for mode in Mode:
            path = trajectory_json
            if mode.moving_camera and (not path or path.startswith(texts.INVALID_TABLE_MARK)):
                path = self.presets[DEFAULT_PRESET].to_json()
            try:
                settings = request_settings(
                    mode.value, frames, fps, size, azimuth, elevation, distance
                )
                result = self.service.preview(
                    portrait,
                    driving,
                    settings,
                    request_trajectory(mode, path),
                    engine=engine or None,
                )
            except InputError as exc:
                strips.append(None)
                notes.append(f"{mode}: {exc}")
                continue
            strips.append(str(result.strip))
        note = texts.FOUR_MODES_NOTE + "".join(f"\n\n{texts.warning(n)}" for n in notes)
        return (*strips, note)

    # --------------------------------------------------------------------- generate
    def gpu_seconds(
        self,
        portrait,
        driving,
        mode,
        trajectory_json,
        azimuth,
        elevation,
        distance,
        frames,
        fps,
        size,
        steps,
        guidance,
        seed,
        engine=None,
        request=None,
    ):
        """What ZeroGPU is asked for, for a generate call with these inputs (the engine's own
        estimate: Wan2.2-Animate-14B asks for more)."""
        engine = engine if engine in ENGINES else self.service.engine
        try:
            cost = estimate(int(frames), int(size), int(steps), float(guidance), engine)
        except (InputError, TypeError, ValueError):  # the run itself refuses it in words
            return 30
        return int(cost["zerogpu_s"])

    def engine_loaded(self, engine: str | None) -> bool:
        try:
            self.service.pipeline_for(engine if engine in ENGINES else self.service.engine)
        except InputError:
            return False
        return True

    def generate_button(self, engine=None):
        """Generate enabled only when the chosen engine has a model loaded (and no run of this
        session is going)."""
        loaded = self.engine_loaded(engine)
        return gr.update(
            interactive=loaded, value="Generate" if loaded else texts.GENERATE_NO_MODEL
        )

    def run_started(self, engine=None, request: gr.Request = None):
        """Generate clicked: (Generate button disabled, the run status). Until the run starts
        (it may wait in the queue behind other people's), a Cancel stops it before it runs."""
        self.session(request).queued = True
        return gr.update(interactive=False), texts.STARTING

    def run_finished(self, engine=None, request: gr.Request = None):
        """After a run, whatever its end (result, error, cancel): Generate back as the engine
        allows."""
        state = self.session(request)
        state.queued = False
        video = state.result_video
        return self.generate_button(engine), gr.update(value=video, visible=video is not None)

    def run_failed(self, engine=None, request: gr.Request = None):
        """After a run that ended in an error (Gradio fires no ``.then`` after one): (Generate,
        run note). A run that never started (the page's inputs were refused before it) says
        so instead of "Starting…"."""
        state = self.session(request)
        note = gr.update()
        if state.queued:  # never started: its inputs failed before the handler ran
            state.queued, state.run_error = False, True
            note = texts.error_note(texts.RUN_NOT_STARTED)
        state.result_video = None
        return self.generate_button(engine), note, gr.update(value=None, visible=False)

    def generate_where_it_runs(
        self, portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames,
        fps, size, steps, guidance, seed, engine=None, request: gr.Request = None,
    ):  # fmt: skip
        """Generate (the page's button and the API's /generate), on a device only for an
        engine that needs a model: ``on_device`` is ``generate`` wrapped by the Space's
        ``spaces.GPU`` (blocks.py), and the geometric engine runs on the Space's own CPU
        instead of waiting in ZeroGPU's queue for a GPU it would not use."""
        chosen = engine if engine in ENGINES else self.service.engine
        run = self.on_device if engine_info(chosen).needs_model else self.generate
        yield from run(
            portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames, fps,
            size, steps, guidance, seed, engine, request=request,
        )  # fmt: skip

    def generate(
        self,
        portrait,
        driving,
        mode,
        trajectory_json,
        azimuth,
        elevation,
        distance,
        frames,
        fps,
        size,
        steps,
        guidance,
        seed,
        engine=None,
        request: gr.Request = None,
    ):
        """Conditioning, then diffusion with ``engine`` (factorportrait or wan-animate; None:
        the service's default). Yields (result video, side-by-side, note): while it runs the
        note is the stage and step (loading, encoding, denoising n of N, decoding, writing);
        at the end the mp4 (with the driving audio when it has one), a side-by-side (driving |
        normals | result; for wan-animate driving | skeleton | result) and what made it. A
        Cancel ends it with "Cancelled after step n"."""
        state = self.session(request)
        session = request.session_hash if request is not None else ""
        run = state.run = RunState()
        state.queued = False
        state.result_video = None
        outcome: dict = {}

        def on_progress(done, total, stage="denoising"):
            run.stage, run.done, run.total = stage, done, total
            run.changed.set()

        def work():
            try:
                settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
                trajectory = request_trajectory(settings.mode, trajectory_json)
                sampling = GenerationSettings(
                    steps=int(steps), guidance_scale=float(guidance), seed=int(seed)
                )
                outcome["trajectory"] = trajectory
                outcome["result"] = self.service.generate(
                    portrait,
                    driving,
                    settings,
                    trajectory,
                    sampling,
                    session=session,
                    progress=on_progress,
                    engine=engine or None,
                )
            except Exception as exc:  # handed to the page below
                outcome["error"] = exc
            finally:
                run.changed.set()

        worker = threading.Thread(target=work, name="generate", daemon=True)
        try:
            worker.start()
            shown = None
            while worker.is_alive():
                status = texts.run_status(
                    run.stage, run.done, run.total, time.monotonic() - run.started, run.cancelling
                )
                if status != shown:
                    shown = status
                    yield None, None, status
                run.changed.wait(timeout=1.0)
                run.changed.clear()
            worker.join()
        finally:
            state.run = None
        error = outcome.get("error")
        if isinstance(error, GenerationStopped):
            yield None, None, texts.stopped_note(str(error))
            return
        if isinstance(error, InputError):
            state.run_error = True
            yield None, None, texts.error_note(str(error))
            raise user_error(error)
        if error is not None:
            state.run_error = True
            raise error
        result = outcome["result"]
        cond = result.conditioning
        status = self.service.engine_status_markdown(result.engine)
        trajectory = outcome["trajectory"]
        note = texts.result_note(
            status,
            engine=result.engine,
            mode=cond.mode,
            path=path_name(trajectory, self.presets) if trajectory is not None else None,
            frames=cond.frames,
            width=cond.width,
            height=cond.height,
            steps=int(steps),
            guidance=float(guidance),
            seed=int(seed),
            seconds=result.seconds,
            warnings=result.warnings,
        )
        state.result_note = note
        state.result_video = str(result.video)
        yield str(result.video), str(result.side_by_side), note

    def cancel(self, request: gr.Request = None):
        """Cancel: the run stops at its next step (its note then says after which); one still
        queued stops before it starts."""
        state = self.session(request)
        cancel = self.service.cancel_event(request.session_hash if request is not None else "")
        if state.run is None:
            if not state.queued:
                return texts.NOTHING_TO_CANCEL
            # Still queued: the run stops as soon as it starts (Service.generate), before
            # anything is loaded or computed.
            cancel.set()
            return texts.stopped_note(texts.CANCELLED_BEFORE_START)
        state.run.cancelling = True
        state.run.changed.set()
        cancel.set()
        return gr.update()
