"""The web demo's event handlers, callable without a page: each takes what its Gradio event
passes (component values, a request, a progress reporter) and returns what its outputs show.
InputError becomes a Gradio error with the same sentence. Handlers that need the loaded model
are methods of ``Handlers`` (bound to one Service); the camera-path editor's are plain
functions. blocks.py lays out the page and wires these to its components."""

from __future__ import annotations

import random
import threading
from collections import OrderedDict

import gradio as gr

from ..conditioning import ConditioningSettings
from ..config import VIDEO
from ..errors import InputError
from ..generation import GenerationSettings
from ..modes import Mode
from ..viewpoint import Trajectory, TrajectoryError, trajectory_figure
from ..wan_animate.engine import ENGINES
from . import editor, texts
from .service import FAST, WAN_ANIMATE, Service, estimate, estimate_markdown


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
    """The camera path a moving-camera mode flies (None for the others)."""
    if not mode.moving_camera:
        return None
    if not trajectory_json:
        raise InputError(texts.NO_CAMERA_PATH)
    return Trajectory.from_json(trajectory_json)


# ------------------------------------------------------------ camera-path editor handlers
def path_figure(trajectory: Trajectory):
    """The 3D view of a path, sampled at the default frame count and size."""
    K, c2w = trajectory.sample(VIDEO.frames).cameras(VIDEO.height, VIDEO.width)
    return trajectory_figure(K, c2w, VIDEO.height, VIDEO.width)


def preset_chosen(presets: dict[str, Trajectory], name: str):
    """A preset picked: (keyframe table, easing, 3D view, trajectory JSON, editor message)."""
    trajectory = presets[name]
    return (
        editor.table_from_trajectory(trajectory),
        trajectory.easing,
        path_figure(trajectory),
        trajectory.to_json(),
        "",
    )


def table_edited(rows, easing):
    """The table or easing edited: (3D view, trajectory JSON, editor message); on a bad table
    the view and JSON stay as they were and the message says what is wrong."""
    try:
        trajectory = editor.trajectory_from_table(rows, easing=easing)
    except TrajectoryError as exc:
        return gr.update(), gr.update(), texts.warning(str(exc))
    return path_figure(trajectory), trajectory.to_json(), ""


def path_loaded(file):
    """A path file uploaded: (keyframe table, easing, 3D view, trajectory JSON); a bad file is
    a user error with the file's problem in words."""
    try:
        trajectory = Trajectory.from_file(file)
    except TrajectoryError as exc:
        raise user_error(exc) from None
    return (
        editor.table_from_trajectory(trajectory),
        trajectory.easing,
        path_figure(trajectory),
        trajectory.to_json(),
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
    wan_animate = engine == WAN_ANIMATE
    return (
        texts.engine_markdown(engine),
        gr.update(visible=wan_animate),
        gr.update(visible=wan_animate),
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


class Handlers:
    """The handlers that use the loaded model, bound to one Service (and the presets)."""

    def __init__(self, service: Service, presets: dict[str, Trajectory]):
        self.service = service
        self.presets = presets
        # The pose and face videos of each browser session's last preview (wan-animate), for
        # the event that shows them. Not a gr.State: a State makes every page hold a heartbeat
        # connection open. Bounded: the oldest sessions are forgotten.
        self._engine_videos: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()
        self._engine_videos_lock = threading.Lock()

    def portrait_uploaded(self, path):
        """(overlay, note) for the uploaded portrait; no face is a note, not an error."""
        try:
            return self.service.track_photo(path)
        except InputError as exc:
            return None, texts.warning(str(exc))

    def driving_uploaded(self, path):
        try:
            return self.service.track_clip(path)
        except InputError as exc:
            return None, texts.warning(str(exc))

    def preset_chosen(self, name):
        return preset_chosen(self.presets, name)

    def path_saved(self, trajectory_json):
        return path_saved(self.service, trajectory_json)

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
        """Everything the model is conditioned on, as videos (CPU, seconds); for wan-animate
        the pose and face videos are kept for ``engine_videos`` (not part of the HTTP API)."""
        try:
            settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = request_trajectory(settings.mode, trajectory_json)
            result = self.service.preview(
                portrait, driving, settings, trajectory, engine=engine or None
            )
        except InputError as exc:
            raise user_error(exc) from None
        videos = (None, None)
        if result.pose is not None:
            videos = (str(result.pose), str(result.face))
        session = request.session_hash if request is not None else ""
        with self._engine_videos_lock:
            self._engine_videos[session] = videos
            self._engine_videos.move_to_end(session)
            while len(self._engine_videos) > MAX_SESSIONS_KEPT:
                self._engine_videos.popitem(last=False)
        return (
            str(result.normals),
            str(result.rays),
            str(result.tracking),
            str(result.strip),
            texts.with_warnings(result.summary, result.warnings),
        )

    def engine_videos(self, request: gr.Request = None):
        """The pose and face videos of this session's last preview (None: nothing to show)."""
        session = request.session_hash if request is not None else ""
        with self._engine_videos_lock:
            return self._engine_videos.get(session, (None, None))

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
        progress=None,
    ):
        """What ZeroGPU is asked for, for a generate call with these inputs (the engine's own
        estimate: Wan2.2-Animate-14B asks for more)."""
        engine = engine if engine in ENGINES else self.service.engine
        return int(
            estimate(int(frames), int(size), int(steps), float(guidance), engine)["zerogpu_s"]
        )

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
        progress=gr.Progress(),  # noqa: B008 (gradio injects progress this way)
    ):
        """Conditioning, then diffusion with ``engine`` (factorportrait or wan-animate; None:
        the service's default); returns the mp4 (with the driving audio when it has one), a
        side-by-side (driving | normals | result) and the status with any warnings."""
        try:
            settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = request_trajectory(settings.mode, trajectory_json)
            sampling = GenerationSettings(
                steps=int(steps), guidance_scale=float(guidance), seed=int(seed)
            )
            result = self.service.generate(
                portrait,
                driving,
                settings,
                trajectory,
                sampling,
                session=request.session_hash if request is not None else "",
                progress=lambda done, total: progress((done, total), desc="denoising"),
                engine=engine or None,
            )
        except InputError as exc:
            raise user_error(exc) from None
        # The note names the engine that made the video.
        status = (
            self.service.wan_animate_status_markdown()
            if result.engine == WAN_ANIMATE
            else self.service.status_markdown()
        )
        note = texts.with_warnings(status, result.warnings)
        return str(result.video), str(result.side_by_side), note

    def cancel(self, request: gr.Request):
        self.service.cancel_event(request.session_hash).set()
        return texts.CANCELLING
