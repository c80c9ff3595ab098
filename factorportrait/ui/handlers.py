"""The web demo's event handlers, callable without a page: each takes what its Gradio event
passes (component values, a request, a progress reporter) and returns what its outputs show.
InputError becomes a Gradio error with the same sentence. Here: ``Handlers``, bound to one
Service, for the uploads, the preview, the examples and the four-modes overview, with the run's
handlers mixed in from ``run_handlers``. The settings' handlers are in ``controls``, the
camera-path editor's in ``editor``, the session state in ``sessions``; blocks.py lays out the
page and wiring.py connects these to its components."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..modes import Mode
from ..viewpoint import Trajectory
from . import controls, editor, texts
from .controls import (
    DEFAULT_PRESET,
    EXAMPLE_PORTRAIT,
    EXAMPLES,
    example_driving,
    request_settings,
    request_trajectory,
    user_error,
)
from .editor import path_name
from .run_handlers import RunHandlers
from .service import Service
from .sessions import MAX_SESSIONS_KEPT, SessionState, preview_request
from .uploads import Refused


def view_name(azimuth, elevation, distance) -> str:
    return f"azimuth {float(azimuth):g}°, elevation {float(elevation):g}°, {float(distance):g}×"


def request_heading(
    mode: Mode, trajectory: Trajectory | None, presets, azimuth, elevation, distance
) -> str:
    """The summary's first words: the mode and its path (moving camera) or view (novel)."""
    path = path_name(trajectory, presets) if trajectory is not None else None
    view = view_name(azimuth, elevation, distance) if mode.novel_view else None
    return texts.summary_heading(mode, path, view)


class Handlers(RunHandlers):
    """The handlers that use the loaded model, bound to one Service (and the presets)."""

    def __init__(self, service: Service, presets: dict[str, Trajectory]):
        self.service = service
        self.presets = presets
        # Per browser session, bounded: the oldest sessions are forgotten.
        self._sessions: OrderedDict[str, SessionState] = OrderedDict()
        self._sessions_lock = threading.Lock()
        # ``generate`` as it runs on a device: wiring.py wraps it with the Space's spaces.GPU.
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
        return editor.preset_chosen(self.presets, name)

    def table_edited(self, rows, easing, selected=1):
        return editor.table_edited(rows, easing, selected, self.presets)

    def keyframe_added(self, rows, easing, selected=1):
        return editor.keyframe_added(rows, easing, selected, self.presets)

    def keyframe_removed(self, rows, easing, selected=1):
        return editor.keyframe_removed(rows, easing, selected, self.presets)

    def path_loaded(self, file):
        return editor.path_loaded(file, self.presets)

    def path_saved(self, trajectory_json):
        return editor.path_saved(self.service, trajectory_json)

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
        table, easing, figure, trajectory_json, message, thumbnail, _ = editor.preset_chosen(
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
            *controls.mode_changed(mode.value),
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
