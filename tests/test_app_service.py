"""The web demo's request layer without a browser: editor table, estimates, guardrails,
cancellation, audio, missing checkpoint."""

import threading

import numpy as np
import pytest

from factorportrait.camera import TrajectoryError, load_preset
from factorportrait.checkpoints import tiny_pipeline
from factorportrait.conditioning import ConditioningSettings
from factorportrait.errors import InputError
from factorportrait.io import write_video
from factorportrait.io.media import read_video
from factorportrait.io.video import mux_audio
from factorportrait.ui import editor
from factorportrait.ui.service import Service, estimate, guardrails, side_by_side, zerogpu_duration


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
    grown = editor.add_keyframe(editor.table_from_trajectory(orbit))
    assert len(grown) == 10 and [r[0] for r in grown] == pytest.approx(
        np.linspace(0, 1, 10).round(4)
    )
    assert len(editor.remove_keyframe(grown)) == 9
    assert len(editor.remove_keyframe([[0, 0, 0, 1, 0, 30]])) == 1  # the last one stays


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
    cond = service.conditioning(
        str(pyfeat / "single_face.jpg"), None, "camera-only", sweep, settings
    )
    assert guardrails(cond, sweep, None) == []
    tight = {"azimuth": [-10, 10], "elevation": [-30, 30], "head_yaw": [-45, 45]}
    assert any("azimuth" in w for w in guardrails(cond, sweep, tight))
    away = sweep.model_copy(
        update={
            "keyframes": [
                sweep.keyframes[0].model_copy(update={"azimuth": 20.0}),
                *sweep.keyframes[1:],
            ]
        }
    )
    assert any("starts away" in w for w in guardrails(cond, away, None))


def test_generate_can_be_cancelled_and_needs_a_checkpoint(service, pyfeat):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    portrait = str(pyfeat / "single_face.jpg")
    calls = []

    def progress(done, total):
        calls.append(done)
        service.cancel_event("session-a").set()  # the user presses Cancel during step 1

    with pytest.raises(InputError, match="Generation cancelled"):
        service.generate(
            portrait,
            None,
            "camera-only",
            load_preset("orbit"),
            settings,
            steps=5,
            guidance=1.0,
            seed=0,
            session="session-a",
            progress=progress,
        )
    assert calls == [1]
    # Another session is not affected, and a new request of the same session starts afresh.
    assert not service.cancel_event("session-b").is_set()
    result = service.generate(
        portrait,
        None,
        "camera-only",
        load_preset("orbit"),
        settings,
        steps=2,
        guidance=1.0,
        seed=0,
        session="session-a",
    )
    assert len(read_video(result["video"]).frames) == 5
    empty = Service(pipeline=None)
    assert "none loaded" in empty.status_markdown()
    with pytest.raises(InputError, match="No checkpoint is loaded"):
        empty.generate(portrait, None, "camera-only", None, settings, steps=2, guidance=1.0, seed=0)


def test_concurrent_cancel_events_are_per_session(service):
    events = []
    threads = [
        threading.Thread(target=lambda i=i: events.append(service.cancel_event(f"s{i % 2}")))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(e) for e in events}) == 2


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

    from factorportrait import generation

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
            "camera-only",
            load_preset("orbit"),
            settings,
            steps=2,
            guidance=1.0,
            seed=0,
        )
    monkeypatch.setattr(generation, "generate_frames", real)
    result = service.generate(
        portrait, None, "camera-only", load_preset("orbit"), settings, steps=2, guidance=1.0, seed=0
    )
    assert len(read_video(result["video"]).frames) == 5


def test_a_run_past_its_time_budget_is_stopped(service, pyfeat, monkeypatch):
    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    monkeypatch.setattr(service, "max_generation_s", 0.0)
    with pytest.raises(InputError, match="ran past its time budget of 0 s"):
        service.generate(
            str(pyfeat / "single_face.jpg"),
            None,
            "camera-only",
            load_preset("orbit"),
            settings,
            steps=3,
            guidance=1.0,
            seed=0,
        )
