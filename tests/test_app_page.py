"""The web demo's page logic without a browser: out-of-date marking, the preset menu following
a loaded file, the generation's named stages, upload checks and the 3D view's contents."""

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from factorportrait.conditioning import ConditioningSettings
from factorportrait.errors import InputError
from factorportrait.head_pose.template import HeadTemplate
from factorportrait.pipelines.checkpoints import tiny_pipeline
from factorportrait.pipelines.generation import GenerationSettings
from factorportrait.ui import camera_view, texts
from factorportrait.ui.editor import path_loaded
from factorportrait.ui.handlers import Handlers
from factorportrait.ui.service import Service
from factorportrait.ui.uploads import checked_image_file
from factorportrait.viewpoint import load_preset, load_presets

ROOT = Path(__file__).resolve().parents[1]


def _request(session: str):
    return SimpleNamespace(session_hash=session)


def test_a_changed_input_marks_the_preview_and_the_result_out_of_date():
    """After a result, a change of mode clears the preview videos, says the preview is out
    of date (naming what changed) and marks the result's note once; another session's page is
    not touched."""
    events = Handlers(Service(pipeline=None), load_presets())
    events.session(_request("a")).result_note = "Done: seed 5."
    normals, rays, tracking, strip, summary, note, pose, face = events.inputs_changed(
        "mode", _request("a")
    )
    assert (normals, rays, tracking, strip, pose, face) == (None,) * 6
    assert summary.startswith("⚠️ Out of date: the mode changed")
    assert "Out of date" in note and note.endswith("Done: seed 5.")
    # Marked once: a second change does not stack marks on the note.
    assert events.inputs_changed("view", _request("a"))[5] == gr.update()
    assert events.inputs_changed("view", _request("b"))[5] == gr.update()


def test_loading_a_preset_file_sets_the_menu_to_that_preset(tmp_path):
    """zoom-orbit.json loaded: the menu says zoom-orbit (not the preset shown before)."""
    presets = load_presets()
    outputs = path_loaded(str(ROOT / "camera_presets/zoom-orbit.json"), presets)
    assert outputs[-1] == "zoom-orbit"
    renamed = tmp_path / "mine.json"
    renamed.write_text(load_preset("dolly").to_json().replace('"dolly"', '"mine"'))
    assert path_loaded(str(renamed), presets)[-1] == "dolly"  # same keyframes: that preset


def test_generation_names_its_stages_and_old_progress_callers_still_work(landmarker_path, pyfeat):
    """A progress that takes ``stage`` hears loading, encoding, each denoising step, decoding
    and writing, in that order; a two-argument progress only the steps (as before)."""
    service = Service(pipeline=tiny_pipeline(seed=0), landmarker=str(landmarker_path))
    settings = ConditioningSettings(mode="camera-only", frames=5, height=32, width=32)
    heard, steps = [], []

    def staged(done, total, stage):
        heard.append((stage, done, total))

    args = (str(pyfeat / "single_face.jpg"), None, settings, load_preset("orbit"))
    service.generate(*args, GenerationSettings(steps=2, guidance_scale=1.0), progress=staged)
    assert heard == [
        ("loading", 0, 2),
        ("encoding", 0, 2),
        ("denoising", 1, 2),
        ("denoising", 2, 2),
        ("decoding", 2, 2),
        ("writing", 2, 2),
    ]
    service.generate(
        *args,
        GenerationSettings(steps=2, guidance_scale=1.0),
        progress=lambda done, total: steps.append(done),
    )
    assert steps == [1, 2]


def test_a_text_file_named_jpg_is_one_sentence_without_server_paths(tmp_path):
    fake = tmp_path / "holiday.jpg"
    fake.write_text("not an image at all\n" * 20)
    with pytest.raises(InputError) as caught:
        checked_image_file(fake, "“holiday.jpg”")
    message = str(caught.value)
    assert message.startswith("“holiday.jpg” is not a photo this app can read")
    assert str(tmp_path) not in message and "Error" not in message and message.count(".") <= 3
    checked_image_file(ROOT / "assets/example_portrait.jpg")  # a real photo passes


def test_a_photo_over_the_pixel_limit_is_refused_for_its_pixels_with_the_numbers(tmp_path):
    """A 9000x9000 PNG is a PNG: the sentence names the pixel limit and the photo's size, not
    "not a photo this app can read" (issue 29, item 3)."""
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (9000, 9000), 128).save(big, optimize=True)
    with pytest.raises(InputError) as caught:
        checked_image_file(big, "“big.png”")
    message = str(caught.value)
    assert "not a photo this app can read" not in message, message
    assert "9000x9000" in message and "81.0 MP" in message and "MP limit" in message, message
    assert message.startswith("“big.png” was refused") and str(tmp_path) not in message


def test_the_3d_view_shows_the_template_head_and_the_selected_keyframes_camera(landmarker_path):
    """The head in the view is the mesh the normal maps come from, the selected keyframe's
    frustum starts at that keyframe's camera, and the thumbnail is that camera's normal map:
    from the static front view the face looks into the camera: its normals point back along
    the camera's z (OpenCV, z forward), so blue, (n_z + 1) / 2, is near 0 and red (n_x)
    near the middle, 127, across the symmetric face's centre."""
    template = camera_view.template_head(str(landmarker_path))
    assert isinstance(template, HeadTemplate)
    sweep = load_preset("sweep")
    figure = camera_view.camera_figure(sweep, template, selected=1)
    head = next(trace for trace in figure.data if trace.type == "mesh3d")
    assert len(head.x) == len(template.head_vertices) + len(template.body_vertices)
    selected = next(trace for trace in figure.data if "selected" in trace.name)
    K, c2w = sweep.sample(49).cameras(512, 512)
    frame = camera_view.keyframe_frames(sweep, 49)[1]
    assert np.allclose([selected.x[0], selected.y[0], selected.z[0]], c2w[frame, :3, 3])
    path = next(trace for trace in figure.data if trace.name == "path")
    assert isinstance(path.line.color, str)  # one colour, as the legend shows it
    front = camera_view.keyframe_thumbnail(load_preset("static"), template, 0, size=64)
    assert front.shape == (64, 64, 3)
    face = front[24:40, 24:40].reshape(-1, 3).astype(float)
    assert face[:, 2].mean() < 60 and abs(face[:, 0].mean() - 127.5) < 30


def test_the_ray_panel_says_what_it_shows():
    assert "direction" in texts.RAYS_EXPLAINED and "moment" in texts.RAYS_EXPLAINED


def test_each_upload_is_followed_by_tracking_for_the_next_preview():
    """The page wiring: after each upload's own handler succeeds, ``uploads_settled`` runs
    with the Preview button's inputs (so it tracks the frames a Preview will), apart from
    previews and one at a time."""
    from factorportrait.ui.blocks import build_demo

    demo = build_demo(Service(pipeline=None))
    by_name = {}
    for index, function in demo.fns.items():
        by_name.setdefault(getattr(function.fn, "__name__", ""), []).append((index, function))
    preview = next(f for _, f in by_name["preview"] if f.api_name == "preview")
    settled = by_name["uploads_settled"]
    uploads = [index for name in ("portrait_uploaded", "driving_uploaded")
               for index, _ in by_name[name]]  # fmt: skip
    assert sorted(f.trigger_after for _, f in settled) == sorted(uploads)
    for _, function in settled:
        assert function.trigger_only_on_success  # a refused upload: its one error, no more
        assert [c._id for c in function.inputs] == [c._id for c in preview.inputs[:-1]]
        assert function.queue is False  # it hands the work to the service and returns


def test_after_an_upload_the_page_hands_the_tracking_to_the_service_and_nothing_escapes():
    """``uploads_settled`` passes the page's settings on (as a Preview would read them) and
    returns; a request that cannot even be read is left to the Preview to report."""
    service = Service(pipeline=None)
    asked = []
    service.track_in_background = lambda *args: asked.append(args)
    events = Handlers(service, load_presets())
    orbit = load_preset("orbit").to_json()
    assert (
        events.uploads_settled("p.jpg", "c.mp4", "all-dynamic", orbit, 30, 0, 1.0, 9, 16, 64)
        is None
    )
    ((portrait, driving, settings, trajectory),) = asked
    assert (portrait, driving, str(settings.mode), settings.frames, settings.height) == (
        "p.jpg",
        "c.mp4",
        "all-dynamic",
        9,
        64,
    )
    assert trajectory is not None
    events.uploads_settled("p.jpg", "c.mp4", "no-such-mode", orbit, 30, 0, 1.0, 9, 16, 64)
    events.uploads_settled("p.jpg", "c.mp4", "all-dynamic", "{not json", 30, 0, 1.0, 9, 16, 64)
    assert len(asked) == 1
