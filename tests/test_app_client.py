"""The launched app through gradio_client: the named preview and generate endpoints."""

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from factorportrait.io.media import read_video
from factorportrait.modes import MODES, Mode

PORTRAIT = "assets/example_portrait.jpg"
DRIVING = "assets/example_driving.mp4"


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False, httpx_kwargs={"timeout": 120})


def test_only_the_two_named_endpoints_are_public(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/preview", "/generate"}


def test_preview_returns_playable_videos_of_the_right_length(client):
    orbit = open("camera_presets/orbit.json").read()
    normals, rays, tracking, strip, summary = client.predict(
        handle_file(PORTRAIT),
        handle_file(DRIVING),
        "all-dynamic",
        orbit,
        30,
        0,
        1.0,
        13,
        16,
        256,
        api_name="/preview",
    )
    for path in (normals, rays, tracking, strip):
        video = read_video(path)
        assert len(video.frames) == 13
    assert read_video(normals).frames.shape[1:3] == (256, 256)
    assert "13 frames at 256x256" in summary


def test_generate_returns_the_video_labelled_untrained(client):
    video_path, side_path, note = client.predict(
        handle_file(PORTRAIT),
        handle_file(DRIVING),
        "frontal-dynamic",
        "",
        30,
        0,
        1.0,
        9,
        16,
        256,
        2,
        3.0,
        5,
        api_name="/generate",
    )
    video = read_video(video_path)
    assert video.frames.shape == (9, 256, 256, 3)
    side = read_video(side_path)
    assert (
        len(side.frames) == 9 and side.frames.shape[2] == 3 * 256
    )  # driving | normals | result (square clip)
    assert "UNTRAINED" in note
    # The banner is burnt into the frames: the top band is darkened with red text.
    assert video.frames[:, :8].mean() < video.frames[:, 40:].mean()


@pytest.mark.parametrize("mode", MODES)
def test_generate_with_the_wan_animate_engine_is_labelled_as_the_public_model(client, mode):
    """The engine is the generate endpoint's last input (calls without it keep working): the
    app's tiny wan-animate engine makes the requested frames in every mode, labelled as the
    public model."""
    video_path, side_path, note = client.predict(
        handle_file(PORTRAIT),
        handle_file(DRIVING),
        str(mode),
        open("camera_presets/orbit.json").read() if Mode(mode).moving_camera else "",
        30,
        0,
        1.0,
        5,
        16,
        256,
        1,
        1.0,
        5,
        "wan-animate",
        api_name="/generate",
    )
    video = read_video(video_path)
    assert video.frames.shape == (5, 256, 256, 3)
    assert "NOT FactorPortrait" in note and "UNTRAINED" not in note
    # The banner's band (256 // 14 = 18 rows) is darkened to a quarter around its notice's
    # bright letters: most of its pixels (the median) are dark.
    assert np.median(video.frames[:, :16]) < 0.5 * np.median(video.frames[:, 40:])


def test_no_face_upload_gives_the_clear_error(client, pyfeat):
    with pytest.raises(Exception, match="no face found"):
        client.predict(
            handle_file(str(pyfeat / "free-mountain-vector-01.jpg")),
            None,
            "camera-only",
            json.dumps(json.load(open("camera_presets/sweep.json"))),
            30,
            0,
            1.0,
            9,
            16,
            256,
            api_name="/preview",
        )


def test_bad_trajectory_json_gives_the_clear_error(client):
    with pytest.raises(Exception, match="keyframes"):
        client.predict(
            handle_file(PORTRAIT),
            None,
            "camera-only",
            '{"version": 1, "name": "x"}',
            30,
            0,
            1.0,
            9,
            16,
            256,
            api_name="/preview",
        )


def test_uploads_with_hostile_names_work(client, app_server, tmp_path):
    """A name with shell syntax reaches the server with that syntax intact (Gradio strips
    `$`, backticks and braces from upload names but keeps `;`, so only a `; command;` can
    matter) and runs nothing: the marker the name would create is in none of the folders the
    server writes to or runs in (Gradio's upload/cache folder, the request outputs, the app's
    working folder) nor the client's."""
    import shutil
    import uuid

    marker = f"PWNED-{uuid.uuid4().hex[:8]}"
    odd = tmp_path / (f"a b; touch {marker}; ü 名前 " + "y" * 120 + ".jpg")
    shutil.copy(PORTRAIT, odd)
    result = client.predict(
        handle_file(str(odd)),
        None,
        "camera-only",
        open("camera_presets/sweep.json").read(),
        30,
        0,
        1.0,
        5,
        16,
        256,
        api_name="/preview",
    )
    assert len(read_video(result[0]).frames) == 5
    uploaded = [p.name for p in app_server.gradio_dir.rglob("*.jpg")]
    assert any(f"; touch {marker};" in name for name in uploaded), uploaded
    for folder in (app_server.gradio_dir, app_server.outputs, tmp_path):
        assert not list(folder.rglob(f"{marker}*")), folder
    assert not list(Path(app_server.cwd).glob(f"{marker}*"))
