"""The web demo's request layer without a browser: editor table, estimates, guardrails,
cancellation, audio, missing checkpoint."""

import json
import re
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import imageio_ffmpeg
import numpy as np
import pytest
from conftest import wait_for

from factorportrait.conditioning import ConditioningSettings
from factorportrait.conditioning.preview import browser_rays, side_by_side
from factorportrait.config import VIDEO
from factorportrait.engines import engine_info
from factorportrait.errors import InputError
from factorportrait.head_pose.rasterizer import normals_to_rgb
from factorportrait.io import write_video
from factorportrait.io.media import read_video
from factorportrait.io.video import mux_audio
from factorportrait.pipelines.checkpoints import tiny_pipeline
from factorportrait.pipelines.generation import GenerationSettings
from factorportrait.planning.cost import zerogpu_duration
from factorportrait.planning.guardrails import TrainedRanges, request_warnings
from factorportrait.ui import editor, texts
from factorportrait.ui.controls import engine_changed
from factorportrait.ui.editor import (
    keyframe_added,
    path_loaded,
    path_saved,
    preset_chosen,
    table_edited,
)
from factorportrait.ui.estimates import estimate
from factorportrait.ui.handlers import Handlers
from factorportrait.ui.service import Service
from factorportrait.viewpoint import (
    Trajectory,
    TrajectoryError,
    load_preset,
    load_presets,
    plucker_rays,
    rays_to_rgb,
)


def test_editor_table_round_trip_and_errors():
    orbit = load_preset("orbit")
    rows = editor.table_from_trajectory(orbit)
    rebuilt = editor.trajectory_from_table(rows, easing=orbit.easing)
    assert rebuilt.keyframes == orbit.keyframes
    rows[3][5] = 500  # fov
    with pytest.raises(TrajectoryError, match=r"keyframes\[3\]\.fov"):
        editor.trajectory_from_table(rows)
    rows[3][5] = "wide"
    with pytest.raises(TrajectoryError, match="keyframe 4: every cell must be a number"):
        editor.trajectory_from_table(rows)
    assert len(editor.remove_keyframe([[0, 0, 0, 1, 0, 30]])) == 1  # the last one stays


def test_add_and_remove_keep_the_other_keyframes_timing():
    """Custom timing (0, 0.1, 0.7, 1) survives both: Add after keyframe 2 puts the new one
    halfway between 0.1 and 0.7 in time (0.4) and in every value; Remove of it gives the table
    back; removing the last moves its neighbour to t = 1 only."""
    rows = [
        [0.0, 0.0, 0.0, 1.0, 0.0, 30.0],
        [0.1, 20.0, 10.0, 1.2, 0.0, 30.0],
        [0.7, -20.0, 0.0, 0.8, 10.0, 40.0],
        [1.0, 0.0, 0.0, 1.0, 0.0, 30.0],
    ]
    grown = editor.add_keyframe(rows, after=1)
    assert [row[0] for row in grown] == [0.0, 0.1, 0.4, 0.7, 1.0]
    assert grown[2] == [0.4, 0.0, 5.0, 1.0, 5.0, 35.0]
    assert editor.remove_keyframe(grown, 2) == rows
    assert [row[0] for row in editor.remove_keyframe(rows, 3)] == [0.0, 0.1, 1.0]
    assert [row[0] for row in editor.remove_keyframe(rows, 0)] == [0.0, 0.7, 1.0]
    # Add never copies a bad row: an invalid table is refused with the reason.
    bad = [list(row) for row in rows]
    bad[2][1] = "left"
    with pytest.raises(TrajectoryError, match="keyframe 3: every cell must be a number"):
        editor.add_keyframe(bad, after=2)
    table, selected, figure, trajectory_json, message, _, _ = keyframe_added(bad, "linear", 3)
    assert table == gr.update() and trajectory_json.startswith("invalid keyframe table: ")


def test_estimates_grow_with_work_and_zerogpu_is_clamped():
    small, large = estimate(33, 384, 20, 1.0), estimate(81, 512, 30, 3.0)
    assert small["seconds"] < large["seconds"] and small["gpu_gib"] < large["gpu_gib"]
    assert estimate(49, 512, 30, 3.0)["seconds"] > estimate(49, 512, 30, 1.0)["seconds"]  # CFG
    assert zerogpu_duration(5, 1) == 30 and zerogpu_duration(121, 60) == 300
    assert zerogpu_duration(33, 20) < zerogpu_duration(49, 30)


@pytest.fixture(scope="module")
def service(landmarker_path):
    return Service(
        pipeline=tiny_pipeline(seed=0), checkpoint="tiny", landmarker=str(landmarker_path)
    )


def test_guardrails(service, pyfeat):
    settings = ConditioningSettings(mode="camera-only", frames=9, height=64, width=64)
    sweep = load_preset("sweep")
    cond = service.conditioning(str(pyfeat / "single_face.jpg"), None, settings, sweep)
    assert request_warnings(cond, sweep, None) == []
    tight = TrainedRanges(camera_azimuth_deg=(-10, 10))
    assert any("azimuth" in w for w in request_warnings(cond, sweep, tight))
    away = sweep.model_copy(
        update={
            "keyframes": [
                sweep.keyframes[0].model_copy(update={"azimuth": 20.0}),
                *sweep.keyframes[1:],
            ]
        }
    )
    assert any("starts away" in w for w in request_warnings(cond, away, None))


def test_generate_can_be_cancelled_and_needs_a_checkpoint(service, pyfeat):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    portrait = str(pyfeat / "single_face.jpg")
    calls = []

    def progress(done, total):
        calls.append(done)
        service.cancel_event("session-a").set()  # the user presses Cancel during step 1

    with pytest.raises(InputError, match=r"Cancelled after step 2 of 5\."):
        service.generate(
            portrait,
            None,
            settings,
            load_preset("orbit"),
            GenerationSettings(steps=5, guidance_scale=1.0, seed=0),
            session="session-a",
            progress=progress,
        )
    assert calls == [1]
    # Another session is not affected, and a new request of the same session starts afresh.
    assert not service.cancel_event("session-b").is_set()
    result = service.generate(
        portrait,
        None,
        settings,
        load_preset("orbit"),
        GenerationSettings(steps=2, guidance_scale=1.0, seed=0),
        session="session-a",
    )
    assert len(read_video(result.video).frames) == 5
    empty = Service(pipeline=None)
    assert "no FactorPortrait checkpoint loaded" in empty.status_markdown()
    with pytest.raises(InputError, match="No checkpoint is loaded"):
        empty.generate(portrait, None, settings, None, GenerationSettings(steps=2))


def test_a_cancel_pressed_while_the_run_is_queued_stops_it_before_it_starts(service, pyfeat):
    events = Handlers(service, load_presets())
    page = SimpleNamespace(session_hash="queued-page")
    inputs = [str(pyfeat / "single_face.jpg"), None, "camera-only", load_preset("orbit").to_json(),
              30, 0, 1.0, 5, 16, 32, 2, 1.0, 0]  # fmt: skip
    # Nothing clicked: nothing to cancel, and no flag left behind for a later run.
    assert events.cancel(request=page) == texts.NOTHING_TO_CANCEL
    assert not service.cancel_event("queued-page").is_set()
    # Generate clicked; its run waits in the queue (behind someone else's) when Cancel comes.
    events.run_started(request=page)
    assert "Cancelled before it started" in events.cancel(request=page)
    steps = []
    service_progress = service.generate

    def counted(*args, **kwargs):
        inner = kwargs.get("progress")
        kwargs["progress"] = lambda done, total, stage="denoising": (
            steps.append((stage, done)),
            inner(done, total, stage=stage),
        )
        return service_progress(*args, **kwargs)

    service.generate = counted
    try:
        video, side, note = list(events.generate(*inputs, request=page))[-1]
    finally:
        del service.generate
    assert (video, side) == (None, None) and "Cancelled before it started" in note
    assert steps == []  # stopped before anything was loaded or computed
    # The flag went with that run: the next Generate of the page runs.
    events.run_started(request=page)
    video, side, note = list(events.generate(*inputs, request=page))[-1]
    assert len(read_video(video).frames) == 5


def test_racing_first_calls_of_one_session_share_one_cancel_flag(monkeypatch):
    """The race forced, no timing: the first caller is held inside the flag's creation until
    the second caller has either also got there (no lock: two flags, so a Cancel would set one
    while the run watches the other) or is waiting on the service's lock (one flag)."""
    from factorportrait.ui import service as service_module

    service = Service(pipeline=None)
    real_lock = service._lock
    contended = threading.Event()

    class WatchedLock:
        """The service's lock, noting when a caller has to wait for it."""

        def __enter__(self):
            if not real_lock.acquire(blocking=False):
                contended.set()
                real_lock.acquire()
            return self

        def __exit__(self, *exc):
            real_lock.release()

    made = []

    def slow_event():
        made.append(threading.current_thread().name)
        if len(made) == 1:  # the first creation waits for the second caller to arrive
            wait_for(
                lambda: len(made) > 1 or contended.is_set(),
                timeout=30,
                what="the second caller",
            )
        return threading.Event()

    monkeypatch.setattr(service, "_lock", WatchedLock())
    monkeypatch.setattr(
        service_module, "threading", SimpleNamespace(Event=slow_event, Lock=threading.Lock)
    )
    got = {}
    threads = [
        threading.Thread(
            target=lambda name=name: got.__setitem__(name, service.cancel_event("tab")),
            name=name,
        )
        for name in ("first", "second")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(made) == 1, f"the flag was made {len(made)} times ({made})"
    assert got["first"] is got["second"]
    # Another session has its own flag.
    assert service.cancel_event("other tab") is not got["first"]


def test_driving_audio_is_kept(pyfeat, tmp_path):
    silent = write_video(tmp_path / "silent.mp4", np.zeros((16, 32, 32, 3), np.uint8), 16)
    out = mux_audio(silent, pyfeat / "single_face.mp4", tmp_path / "with sound.mp4")
    video = read_video(out)
    assert video.has_audio and len(video.frames) == 16


def test_side_by_side_scales_panels_to_one_height():
    tall = np.zeros((3, 100, 50, 3), np.uint8)
    square = np.zeros((3, 64, 64, 3), np.uint8)
    strip = side_by_side([tall, square], 64)
    assert strip.shape == (3, 64, 32 + 64, 3)


def test_out_of_memory_becomes_a_clear_error_and_the_service_keeps_working(
    service, pyfeat, monkeypatch
):
    import torch

    from factorportrait.pipelines import generation

    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    portrait = str(pyfeat / "single_face.jpg")
    real = generation.generate_frames

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(generation, "generate_frames", out_of_memory)
    with pytest.raises(InputError, match="ran out of memory for these settings"):
        service.generate(
            portrait,
            None,
            settings,
            load_preset("orbit"),
            GenerationSettings(steps=2, guidance_scale=1.0, seed=0),
        )
    monkeypatch.setattr(generation, "generate_frames", real)
    result = service.generate(
        portrait,
        None,
        settings,
        load_preset("orbit"),
        GenerationSettings(steps=2, guidance_scale=1.0, seed=0),
    )
    assert len(read_video(result.video).frames) == 5


def test_a_run_past_its_time_budget_is_stopped(service, pyfeat, monkeypatch):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    monkeypatch.setattr(service, "max_generation_s", 0.0)
    with pytest.raises(InputError, match="ran past its time budget of 0 s"):
        service.generate(
            str(pyfeat / "single_face.jpg"),
            None,
            settings,
            load_preset("orbit"),
            GenerationSettings(steps=3, guidance_scale=1.0, seed=0),
        )


ROOT = Path(__file__).resolve().parents[1]
TONE_HZ = 440.0


def _ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", *args],
        capture_output=True,
        timeout=120,
    )


def test_the_driving_clips_sound_is_kept_in_the_generated_video(service, tmp_path):
    """The example clip with a 440 Hz tone muxed in (ffmpeg's lavfi sine) drives a generation
    with the tiny model; the result has an audio stream (ffmpeg's own stream listing, not the
    project's reader) whose strongest frequency is the tone's."""
    driving = tmp_path / "driving with sound.mp4"
    made = _ffmpeg(
        "-v", "error", "-y",
        "-i", str(ROOT / "assets/example_driving.mp4"),
        "-f", "lavfi", "-i", f"sine=frequency={TONE_HZ:g}:sample_rate=48000:duration=10",
        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-shortest",
        str(driving),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr.decode()
    settings = ConditioningSettings(mode="frontal-dynamic", frames=9, height=32, width=32)
    result = service.generate(
        str(ROOT / "assets/example_portrait.jpg"),
        str(driving),
        settings,
        None,
        GenerationSettings(steps=1, guidance_scale=1.0, seed=0),
    )
    streams = _ffmpeg("-i", str(result.video)).stderr.decode()  # "no output" is rc 1
    assert re.search(r"Stream #0:\d.*: Video: h264", streams), streams
    assert re.search(r"Stream #0:\d.*: Audio: aac", streams), streams
    assert len(read_video(result.video).frames) == 9
    pcm = _ffmpeg(
        "-v", "error", "-i", str(result.video), "-map", "0:a:0",
        "-f", "s16le", "-ac", "1", "-ar", "8000", "-",
    )  # fmt: skip
    assert pcm.returncode == 0, pcm.stderr.decode()
    samples = np.frombuffer(pcm.stdout, np.int16).astype(np.float64)
    assert len(samples) >= 0.4 * 8000  # about the video's 9 frames at 16 fps (0.56 s)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak_hz = np.fft.rfftfreq(len(samples), 1 / 8000)[spectrum.argmax()]
    assert abs(peak_hz - TONE_HZ) < 8000 / len(samples) * 2  # within two FFT bins


# ------------------------------------------------------------- the camera-path editor handlers
def _horizontal_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Degrees between two camera centres seen from above the head (the x-z plane: the head
    looks along +z with y down, as the figure's nose shows)."""
    return float(np.degrees(abs(np.arctan2(a[0], a[2]) - np.arctan2(b[0], b[2]))))


def _path_centres(figure) -> np.ndarray:
    path = next(trace for trace in figure.data if trace.name == "path")
    return np.stack([path.x, path.y, path.z], axis=1)


def test_choosing_a_preset_fills_the_table_with_its_keyframes():
    presets = load_presets()
    table, easing, figure, trajectory_json, message, thumbnail, selected = preset_chosen(
        presets, "sweep"
    )
    assert selected == 1  # the keyframe the view highlights
    on_disk = json.loads((ROOT / "camera_presets/sweep.json").read_text())
    assert table == [[key[c] for c in editor.COLUMNS] for key in on_disk["keyframes"]]
    assert easing == on_disk["easing"] == "ease-in-out" and message == ""
    assert json.loads(trajectory_json) == on_disk
    centres = _path_centres(figure)
    assert len(centres) == VIDEO.frames
    # sweep: 0 -> +35 -> -35 -> 0 degrees of azimuth: the path spans 70 degrees round the head
    # and ends where it started.
    angles = [_horizontal_angle(c, centres[0]) for c in centres]
    assert max(angles) == pytest.approx(35, abs=0.5)
    assert _horizontal_angle(centres[-1], centres[0]) == pytest.approx(0, abs=1e-6)


def test_editing_the_table_rebuilds_the_path_and_a_bad_cell_is_reported():
    rows = [[0.0, 0.0, 0.0, 1.0, 0.0, 30.0], [1.0, 50.0, 0.0, 1.0, 0.0, 30.0]]
    figure, trajectory_json, message, _, preset = table_edited(rows, "linear")
    trajectory = Trajectory.from_json(trajectory_json)
    assert message == "" and trajectory.easing == "linear" and preset == "custom keyframes"
    assert [(k.t, k.azimuth) for k in trajectory.keyframes] == [(0.0, 0.0), (1.0, 50.0)]
    centres = _path_centres(figure)
    assert _horizontal_angle(centres[-1], centres[0]) == pytest.approx(50, abs=0.1)
    # at constant distance the camera keeps its distance from the head
    radii = np.linalg.norm(centres, axis=1)
    assert radii == pytest.approx(np.full(len(radii), radii[0]), rel=1e-6)

    rows[1][1] = "far left"
    figure, trajectory_json, message, thumbnail, _ = table_edited(rows, "linear")
    assert "keyframe 2: every cell must be a number" in message
    assert figure is None and thumbnail is None  # the old path's view is not kept


def test_an_invalid_table_blocks_preview_and_generate_with_its_reason(pyfeat):
    """With a bad cell on screen, Preview and Generate refuse with the table's problem (they
    never fly the last valid path, which no longer matches the table)."""
    rows = [[0.0, 0.0, 0.0, 1.0, 0.0, 30.0], [1.0, "far left", 0.0, 1.0, 0.0, 30.0]]
    trajectory_json = table_edited(rows, "linear")[1]
    events = Handlers(Service(pipeline=tiny_pipeline(seed=0)), load_presets())
    portrait = str(pyfeat / "single_face.jpg")
    with pytest.raises(gr.Error, match="keyframe 2: every cell must be a number") as caught:
        events.preview(portrait, None, "camera-only", trajectory_json, 0, 0, 1, 5, 8, 64)
    assert "fix it before Preview or Generate" in caught.value.message
    run = events.generate(
        portrait, None, "camera-only", trajectory_json, 0, 0, 1, 5, 8, 64, 2, 1.0, 0
    )
    with pytest.raises(gr.Error, match="keyframe 2: every cell must be a number"):
        list(run)


def test_a_preview_that_lands_after_its_inputs_changed_is_marked_superseded(pyfeat):
    """Issue 29, item 4, in the order a slow preview gives: the answer lands after Size
    changed, and the step after it (``preview_settled``, given the page's inputs as they are
    then) marks it superseded; unchanged inputs leave it as it is."""
    events = Handlers(Service(pipeline=None, engine="geometry"), load_presets())
    portrait = str(pyfeat / "single_face.jpg")
    orbit = load_presets()["orbit"].to_json()
    asked = (portrait, None, "camera-only", orbit, 0, 0, 1, 5, 16, 64, "geometry")
    summary = events.preview(*asked)[4]
    assert "at 64x64" in summary
    unchanged = events.preview_settled(*asked)
    assert unchanged[6] == gr.update()  # the summary stays as the preview wrote it
    resized = events.preview_settled(*asked[:9], 128, "geometry")
    assert "Superseded" in resized[6] and "at 64x64" in resized[6], resized[6]


def test_only_an_engine_that_needs_a_model_asks_for_a_device(pyfeat):
    """On a ZeroGPU Space, Generate asks for a GPU (``on_device``: spaces.GPU around generate)
    only for the diffusion engines; the geometric engine runs where the page runs."""
    events = Handlers(Service(pipeline=tiny_pipeline(seed=0)), load_presets())
    asked = []

    def on_device(*args, **kwargs):
        asked.append(args[-1])  # the engine
        yield from events.generate(*args, **kwargs)

    events.on_device = on_device
    portrait = str(pyfeat / "single_face.jpg")
    orbit = load_presets()["orbit"].to_json()
    request = (portrait, None, "camera-only", orbit, 0, 0, 1, 5, 16, 64, 1, 1.0, 0)
    geometry = list(events.generate_where_it_runs(*request, "geometry"))
    assert asked == [] and geometry[-1][0] is not None  # a video, made without a device
    diffusion = list(events.generate_where_it_runs(*request, "factorportrait"))
    assert asked == ["factorportrait"] and diffusion[-1][0] is not None


def test_the_editor_counts_keyframes_from_one_and_an_edit_makes_the_path_custom():
    """Issue 29, item 6: the table's rows and "Selected keyframe" count from 1, and the
    editor's messages did not ("keyframes[1].distance" for row 2); after an invalid edit the
    preset menu still said "orbit"."""
    far = [[0.0, 0.0, 0.0, 1.0, 0.0, 30.0], [1.0, 0.0, 0.0, 9.0, 0.0, 30.0]]
    _, _, message, _, preset = table_edited(far, "linear")
    assert "keyframe 2: distance" in message and "keyframes[" not in message, message
    assert preset == "custom keyframes"
    backwards = [
        [0.0, 0, 0, 1, 0, 30],
        [0.6, 0, 0, 1, 0, 30],
        [0.4, 0, 0, 1, 0, 30],
        [1, 0, 0, 1, 0, 30],
    ]
    _, _, message, _, _ = table_edited(backwards, "linear")
    assert "keyframe 3: t" in message, message


def test_save_then_load_round_trips_and_a_bad_file_is_a_clear_error(tmp_path):
    service = Service(pipeline=None, output_root=tmp_path / "outputs")
    service.output_root.mkdir()
    custom = table_edited([[0, 0, 0, 1, 0, 30], [0.5, -20, 10, 1.2, 5, 35], [1, 20, 0, 1, 0, 30]],
                          "ease-in-out")[1]  # fmt: skip
    saved = path_saved(service, custom)
    assert saved["visible"] is True
    path = Path(saved["value"])
    assert path.parent.parent == service.output_root and path.name == "custom.json"
    table, easing, _, loaded_json, _, _, preset = path_loaded(str(path))
    assert preset == "custom keyframes"
    assert table == [[0, 0, 0, 1, 0, 30], [0.5, -20, 10, 1.2, 5, 35], [1, 20, 0, 1, 0, 30]]
    assert easing == "ease-in-out"
    assert json.loads(loaded_json) == json.loads(custom)

    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "name": "x", "keyframes": [{"t": 0, "azimuth": "left"}]}')
    with pytest.raises(gr.Error) as caught:
        path_loaded(str(broken))
    assert "keyframes[0].azimuth" in str(caught.value.message)
    with pytest.raises(gr.Error, match="not JSON|JSON|Invalid"):
        path_saved(service, "not json at all")


def test_the_sweep_spares_a_folder_whose_file_is_still_being_written(tmp_path):
    """Request folders are swept once nothing in them changed for the TTL: a folder created
    long ago whose video is still being written stays; one where everything is old goes."""
    import os

    service = Service(pipeline=None, output_root=tmp_path, output_ttl_s=60.0)
    long_ago = time.time() - 600
    writing, done = service.request_dir(), service.request_dir()
    (writing / "result.mp4").write_bytes(b"still being written")  # modified just now
    (done / "result.mp4").write_bytes(b"finished")
    os.utime(done / "result.mp4", (long_ago, long_ago))
    for folder in (writing, done):
        os.utime(folder, (long_ago, long_ago))  # the folders' own times: both old
    fresh = service.request_dir()
    assert sorted(tmp_path.glob("req-*")) == sorted([writing, fresh])


# ---------------------------------------------------------------- the handlers, without a page
def test_a_request_is_validated_once_by_the_layers_that_own_the_checks(
    service, pyfeat, monkeypatch
):
    """The generate handler as Gradio calls it: the conditioning settings are checked once (by
    the core) and the sampling settings once (by generation), and a mode that needs a driving
    video says so once, in the core's words."""
    from factorportrait.conditioning import bundle
    from factorportrait.pipelines.generation import GenerationSettings as Sampling

    calls = {"conditioning": 0, "sampling": 0}
    checks = {"conditioning": bundle.ConditioningSettings.validated, "sampling": Sampling.validated}

    def counted(name):
        def validated(self):
            calls[name] += 1
            return checks[name](self)

        return validated

    monkeypatch.setattr(bundle.ConditioningSettings, "validated", counted("conditioning"))
    monkeypatch.setattr(Sampling, "validated", counted("sampling"))
    events = Handlers(service, load_presets())
    orbit = load_preset("orbit").to_json()
    portrait = str(pyfeat / "single_face.jpg")
    inputs = [portrait, None, "camera-only", orbit, 30, 0, 1.0, 5, 16, 32]
    video, side, note = list(events.generate(*inputs, 1, 1.0, 0))[-1]
    assert len(read_video(video).frames) == 5 and "UNTRAINED" in note
    assert calls == {"conditioning": 1, "sampling": 1}
    with pytest.raises(gr.Error, match="steps: 0 is outside"):
        list(events.generate(*inputs, 0, 1.0, 0))
    inputs[2] = "frontal-dynamic"
    with pytest.raises(gr.Error) as caught:
        events.preview(*inputs)
    assert caught.value.message == (
        "mode frontal-dynamic: a driving video is needed (only camera-only works without)"
    )


def test_the_demos_estimate_counts_a_forward_as_training_does():
    """One cost model: the demo's FLOPs per transformer pass equal training's exact count for
    the 1.3B model (built on the meta device) within 1%, on the same GPU assumptions."""
    import torch

    from factorportrait.pipelines.checkpoints import WAN_13B_CONFIG, starting_transformer
    from factorportrait.planning import cost
    from factorportrait.training import cost as training_cost

    with torch.device("meta"):
        transformer = starting_transformer(WAN_13B_CONFIG)
    for frames, size in ((33, 384), (81, 512)):
        tokens = cost.generation_tokens(frames, size, size)
        exact = training_cost.forward_flops(transformer, tokens)
        assert cost.forward_flops_estimate(tokens) == pytest.approx(exact, rel=0.01)
    assert training_cost.H100_BF16_TFLOPS is cost.H100_BF16_TFLOPS
    # 20 steps without guidance: 20 passes and the fixed overhead, at 989 TFLOPS x 40%.
    tokens = cost.generation_tokens(33, 384, 384)
    passes = 20 * cost.forward_flops_estimate(tokens) / (989e12 * 0.4)
    seconds = estimate(33, 384, 20, 1.0)["seconds"]
    assert seconds == pytest.approx(passes + cost.GENERATION_OVERHEAD_S)


def test_the_service_judges_requests_by_its_checkpoints_trained_ranges(tmp_path):
    """A checkpoint folder with trained_ranges.json: the service loads those ranges; one
    without the file, or no checkpoint at all, is judged by the defaults (None)."""
    from factorportrait.pipelines.checkpoints import make_tiny_checkpoint
    from factorportrait.pipelines.generation import load_pipeline
    from factorportrait.planning.guardrails import save_trained_ranges

    folder = make_tiny_checkpoint(tmp_path / "tiny")
    assert Service(pipeline=load_pipeline(folder, device="cpu")).trained_ranges is None
    narrow = TrainedRanges(camera_azimuth_deg=(-20, 20), head_yaw_deg=(-15, 15))
    save_trained_ranges(narrow, folder)
    assert Service(pipeline=load_pipeline(folder, device="cpu")).trained_ranges == narrow
    assert Service(pipeline=None).trained_ranges is None


@pytest.fixture(scope="module")
def wan_service(landmarker_path):
    from factorportrait.engines.wan_animate.loading import tiny_wan_animate_pipeline

    return Service(
        wan_animate=tiny_wan_animate_pipeline(seed=0),
        wan_animate_checkpoint="tiny",
        landmarker=str(landmarker_path),
    )


def test_the_service_makes_a_wan_animate_request_as_wan_animate_would(wan_service, pyfeat):
    """Issue 28 through the page and the API: a 16 fps request on wan-animate becomes its own
    rate with a note, and a frame count it cannot make is refused in one sentence before the
    portrait is even tracked."""
    portrait = str(pyfeat / "single_face.jpg")
    settings = ConditioningSettings(mode="camera-only", frames=5, fps=16, height=64, width=64)
    preview = wan_service.preview(
        portrait, None, settings, load_preset("orbit"), engine="wan-animate"
    )
    own = engine_info("wan-animate").default_fps()
    assert preview.conditioning.fps == own
    assert any(f"{own:g} fps" in note for note in preview.warnings), preview.warnings
    one = ConditioningSettings(mode="camera-only", frames=1, height=64, width=64)
    with pytest.raises(InputError, match="frames") as refused:
        wan_service.preview("/nonexistent/portrait.jpg", None, one, engine="wan-animate")
    assert "portrait" not in str(refused.value)  # refused before the portrait was read


def test_generate_with_the_wan_animate_engine_is_labelled_and_an_unknown_engine_refused(
    wan_service, pyfeat
):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=64, width=48)
    portrait = str(pyfeat / "single_face.jpg")
    sampling = GenerationSettings(steps=2, guidance_scale=1.0, seed=0)
    calls = []
    result = wan_service.generate(
        portrait,
        None,
        settings,
        load_preset("orbit"),
        sampling,
        engine="wan-animate",
        progress=lambda done, total: calls.append((done, total)),
    )
    video = read_video(result.video).frames
    assert video.shape == (5, 64, 48, 3)
    assert calls == [(1, 2), (2, 2)]  # one segment of 5 frames: 2 steps
    # The public-model banner: the top band (height // 14, at least 12 rows) darkened to a
    # quarter under its notice (at this width the words are a few pixels high).
    assert np.median(video[:, :12]) < 0.5 * np.median(video[:, 12:])
    # The side-by-side shows what drove the result: the skeleton, not the normal maps.
    from factorportrait.engines.wan_animate.skeleton import pose_video
    from factorportrait.head_pose.rasterizer import normals_to_rgb

    cond = result.conditioning
    middle = read_video(result.side_by_side).frames[:, :, 48:96].astype(float)
    skeleton = np.asarray(pose_video(cond)).astype(float)
    normals = normals_to_rgb(cond.normals, cond.mask).astype(float)
    assert np.abs(middle - skeleton).mean() < 0.3 * np.abs(middle - normals).mean()
    # Its notes are what the public model cannot honour, not FactorPortrait's trained ranges.
    assert any("not trained for camera control" in note for note in result.warnings)
    assert any("portrait's own face" in note for note in result.warnings)
    with pytest.raises(InputError, match="engine: 'sora' is not one of"):
        wan_service.generate(
            portrait, None, settings, load_preset("orbit"), sampling, engine="sora"
        )
    # This service has no FactorPortrait checkpoint: that engine says so.
    with pytest.raises(InputError, match="No checkpoint is loaded"):
        wan_service.generate(
            portrait, None, settings, load_preset("orbit"), sampling, engine="factorportrait"
        )


def test_wan_animate_progress_counts_every_segments_steps(wan_service, pyfeat, monkeypatch):
    """81 frames are two segments of 77 (one frame carried over): the pipeline's callback runs
    its 3 steps twice, its index restarting; the page's progress runs once from 1 to 6."""
    from factorportrait.engines.wan_animate import engine as wan_engine

    def two_segments(pipeline, cond, *, steps, guidance, seed, callback=None):
        for _ in range(2):
            for step in range(steps):
                callback(pipeline, step, 0, {})
        return np.zeros((cond.frames, cond.height, cond.width, 3), np.uint8)

    monkeypatch.setattr(wan_engine, "generate_wan_animate", two_segments)
    calls = []
    wan_service.generate(
        str(pyfeat / "single_face.jpg"),
        None,
        ConditioningSettings(mode="camera-only", frames=81, height=32, width=32),
        load_preset("orbit"),
        GenerationSettings(steps=3, guidance_scale=1.0, seed=0),
        engine="wan-animate",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(done, 6) for done in range(1, 7)]


def test_the_wan_animate_preview_adds_the_pose_and_face_videos(wan_service, pyfeat):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=64, width=64)
    portrait = str(pyfeat / "single_face.jpg")
    result = wan_service.preview(
        portrait, None, settings, load_preset("orbit"), engine="wan-animate"
    )
    assert read_video(result.pose).frames.shape == (5, 64, 64, 3)
    # The face crops at the side the loaded model's motion encoder reads (the tiny one: 64).
    size = wan_service.wan_animate.transformer.config.motion_encoder_size
    assert read_video(result.face).frames.shape == (5, size, size, 3)
    plain = wan_service.preview(
        portrait, None, settings, load_preset("orbit"), engine="factorportrait"
    )
    assert plain.pose is None and plain.face is None


def test_choosing_an_engine_says_what_it_is_and_shows_its_driving_videos():
    text, pose, face = engine_changed("wan-animate")
    chosen = next(line for line in text.splitlines() if line.startswith("- **"))
    assert "Wan2.2-Animate" in chosen and "NOT FactorPortrait" in chosen
    assert pose["visible"] is True and face["visible"] is True
    text, pose, face = engine_changed("factorportrait")
    chosen = next(line for line in text.splitlines() if line.startswith("- **"))
    assert "no trained weights exist yet" in chosen.lower()
    assert pose["visible"] is False and face["visible"] is False


def test_each_session_sees_its_own_previews_driving_videos():
    """The pose and face videos shown after a preview are that browser session's own (kept
    per session, not in a gr.State, which would hold a heartbeat connection open per page)."""
    from types import SimpleNamespace

    from factorportrait.ui.handlers import Handlers

    class StubService:
        def preview(self, portrait, driving, settings, trajectory, engine=None):
            name = Path(portrait).stem
            extra = (
                {} if engine != "wan-animate" else {"pose": f"{name}-pose", "face": f"{name}-face"}
            )
            return SimpleNamespace(
                normals="n",
                rays="r",
                tracking="t",
                strip="s",
                summary="",
                warnings=[],
                pose=extra.get("pose"),
                face=extra.get("face"),
            )

    events = Handlers(StubService(), {})
    inputs = ["camera-only", load_preset("orbit").to_json(), 30, 0, 1.0, 5, 16, 32]
    alice, bob = SimpleNamespace(session_hash="alice"), SimpleNamespace(session_hash="bob")
    events.preview("a.jpg", None, *inputs, "wan-animate", request=alice)
    events.preview("b.jpg", None, *inputs, "factorportrait", request=bob)
    assert events.engine_videos(request=alice) == ("a-pose", "a-face")
    assert events.engine_videos(request=bob) == (None, None)
    assert events.engine_videos(request=SimpleNamespace(session_hash="carol")) == (None, None)


def test_the_public_engines_estimate_counts_its_14b_transformer_over_its_segments():
    from factorportrait.planning import cost

    fp = estimate(77, 512, 20, 1.0)
    wan = estimate(77, 512, 20, 1.0, "wan-animate")
    assert wan["seconds"] > 5 * (fp["seconds"] - cost.GENERATION_OVERHEAD_S)  # 14B vs 1.3B
    # 17.3e9 transformer weights in bf16 (32 GiB) stay on the GPU either way; offload moves
    # the other 13 GiB (text and image encoders, VAE) off it.
    assert wan["gpu_gib_offload"] > 17.27e9 * 2 / 2**30
    assert wan["gpu_gib"] - wan["gpu_gib_offload"] == pytest.approx(11.4 + 1.2 + 0.5)
    # 153 frames = two 77-frame segments (the second carries one frame): twice the denoising.
    two = estimate(153, 512, 20, 1.0, "wan-animate")
    overhead = cost.GENERATION_OVERHEAD_S
    assert two["seconds"] - overhead == pytest.approx(2 * (wan["seconds"] - overhead))
    assert two["zerogpu_s"] > wan["zerogpu_s"] > zerogpu_duration(77, 20)
    assert estimate(2001, 832, 50, 5.0, "wan-animate")["zerogpu_s"] == 300  # clamped


def test_zerogpu_is_asked_for_the_chosen_engines_time(tmp_path):
    from factorportrait.ui.controls import estimate_changed
    from factorportrait.ui.handlers import Handlers

    events = Handlers(Service(pipeline=None, output_root=tmp_path), {})
    request = (None, None, "frontal-dynamic", "", 0, 0, 0, 77, 16, 512, 20, 1.0, 0)
    assert events.gpu_seconds(*request, "wan-animate") > events.gpu_seconds(
        *request, "factorportrait"
    )
    assert "Wan2.2-Animate-14B" in estimate_changed(77, 512, 20, 1.0, "wan-animate")
    assert "1.3B" in estimate_changed(77, 512, 20, 1.0, "factorportrait")


def test_the_status_says_what_a_cpu_machine_lacks_for_the_public_engine(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = Service(pipeline=None).wan_animate_status_markdown()
    assert "needs a CUDA GPU" in line and "--tiny" in line


@pytest.mark.parametrize(("size", "panel"), [(128, 128), (256, 256), (384, 192), (512, 256)])
def test_the_page_gets_the_ray_maps_at_the_size_it_shows_them(size, panel):
    K, c2w = load_preset("orbit").sample(3).cameras(size, size)
    rays = plucker_rays(K, c2w, size, size, reference_c2w=c2w[0])
    cond = SimpleNamespace(
        K=K, c2w=c2w, reference_c2w=c2w[0], height=size, width=size, rays=rays, ray_maps=None
    )
    shown = browser_rays(cond)
    assert shown.shape == (3, 6, panel, panel)
    step = size // panel
    if step == 1:
        assert shown is rays  # small enough already: the conditioning's own maps
        return
    # Each shown pixel is the ray through the centre of the block of full-size pixels it
    # covers: the mean of the block's rays (directions renormalised; about 2e-7 off), not one
    # of its pixels (taking every step-th pixel is half a pixel off: 2e-4 to 7e-4).
    blocks = rays.reshape(3, 6, panel, step, panel, step).mean(axis=(3, 5))
    directions = blocks[:, 3:] / np.linalg.norm(blocks[:, 3:], axis=1, keepdims=True)
    np.testing.assert_allclose(shown[:, 3:], directions, atol=1e-5)
    np.testing.assert_allclose(shown[:, :3], blocks[:, :3], atol=1e-5)
    # Maps the conditioning already holds (given, or made for generation): every step-th pixel
    # of them, no camera needed.
    given = SimpleNamespace(**{**vars(cond), "ray_maps": rays, "reference_c2w": None})
    np.testing.assert_array_equal(browser_rays(given), rays[:, :, ::step, ::step])


def test_the_web_preview_writes_each_video_at_its_size_with_its_pictures(pyfeat, tmp_path):
    service = Service(output_root=tmp_path)
    settings = ConditioningSettings(mode="all-dynamic", frames=5, height=320, width=320)
    result = service.preview(
        str(pyfeat / "single_face.jpg"), str(pyfeat / "single_face.mp4"), settings,
        load_preset("orbit"), engine="factorportrait",
    )  # fmt: skip
    cond = result.conditioning
    # Nothing larger than shown was made: no full ray maps, no float normal maps (their colours
    # were rendered straight away); reading them makes them, and they agree with the videos.
    assert cond.ray_maps is None and cond.normal_maps is None
    np.testing.assert_array_equal(cond.normals_rgb(), normals_to_rgb(cond.normals, cond.mask))
    assert cond.normal_maps is not None and cond.normals.dtype == np.float32
    normals = read_video(result.normals).frames
    rays = read_video(result.rays).frames
    strip = read_video(result.strip).frames
    assert normals.shape == (5, 320, 320, 3)
    assert rays.shape == (5, 160, 320, 3)  # direction | moment, each at half the side
    tracking = read_video(result.tracking).frames
    assert strip.shape[:2] == (5, 256) and tracking.shape[:2] == (5, 320)
    # The pictures are the conditioning's own (H.264 at CRF 23: a few levels off).
    expected_rays = rays_to_rgb(browser_rays(cond)).astype(int)
    assert np.abs(rays.astype(int) - expected_rays).mean() < 3
    expected_normals = normals_to_rgb(cond.normals, cond.mask).astype(int)
    assert np.abs(normals.astype(int) - expected_normals).mean() < 3
    # tracking | normals | ray directions, each at the strip's height: the middle panel is the
    # normals video, the last the rays video's left half.
    first = round(tracking.shape[2] * 256 / 320 / 2) * 2
    assert strip.shape[2] == first + 256 + 256
    middle, last = strip[:, :, first : first + 256], strip[:, :, first + 256 :]
    assert abs(middle.astype(int).mean() - normals.astype(int).mean()) < 3
    assert abs(last.astype(int).mean() - rays[:, :, :160].astype(int).mean()) < 3


def _ray_panel_motion(strip: str, side: int) -> float:
    """How far the strip's ray panel (its last ``side`` columns) strays from its first frame:
    the largest mean absolute difference of a frame's panel, 0-255."""
    rays = read_video(strip).frames[:, :, -side:].astype(np.float64)
    return float(np.abs(rays - rays[:1]).mean(axis=(1, 2, 3)).max())


def test_the_four_modes_grid_shows_each_mode_and_says_why_one_is_missing(service, pyfeat):
    """The "Preview all four modes" grid: a strip per mode in Mode order, each its own
    (frontal-dynamic's camera still, camera-only's flying the default path); without a clip,
    only camera-only, and the note names each mode left empty with its reason."""
    events = Handlers(service, load_presets())
    photo, clip = str(pyfeat / "single_face.jpg"), str(pyfeat / "single_face.mp4")
    settings = ("", 30, 0, 1.0, 9, 16, 64)  # no path drawn: the default preset flies
    *strips, note = events.four_modes(photo, clip, *settings)
    assert note == texts.FOUR_MODES_NOTE
    videos = [read_video(s).frames for s in strips]
    assert [len(frames) for frames in videos] == [9, 9, 9, 9]
    # Four different previews, not one four times: the normals | rays panels differ (mean
    # 16-23 of 255 here) for every pair but camera-only and all-dynamic, which fly the same
    # path and differ only where the clip turns the head (3 here) ...
    controls = [frames[:, :, -128:].astype(int) for frames in videos]
    for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3)):
        assert np.abs(controls[a] - controls[b]).mean() > 10, (a, b)
    # ... and camera-only tracks the portrait, held, where the driven modes show the clip.
    widths = [frames.shape[2] for frames in videos]
    assert widths[0] == widths[1] == widths[3] != widths[2]
    assert _ray_panel_motion(strips[0], 64) < 2  # frontal-dynamic: a still camera
    assert _ray_panel_motion(strips[1], 64) < 2  # novel-dynamic: still, elsewhere
    assert _ray_panel_motion(strips[2], 64) > 10  # camera-only: the path flown
    *strips, note = events.four_modes(photo, None, *settings)
    assert [s is None for s in strips] == [True, True, False, True]
    for mode in ("frontal-dynamic", "novel-dynamic", "all-dynamic"):
        assert f"{mode}: mode {mode}: a driving video is needed" in note
    assert "camera-only:" not in note
