"""`python -m factorportrait preview`: the files, and one-line errors with nothing written."""

import json
import subprocess
import sys

import numpy as np
import pytest

from factorportrait.cli import main
from factorportrait.conditioning.preview import ARRAYS_FILE, PREVIEW_FILES
from factorportrait.io.media import read_video


def _portrait_blendshapes(tracker, pyfeat):
    from factorportrait.io.media import read_image

    return tracker.track_image(read_image(pyfeat / "single_face.jpg")).blendshapes


def test_preview_writes_every_file(pyfeat, landmarker_path, tracker, tmp_path, capsys):
    out = tmp_path / "preview out"
    code = main(["preview", "--portrait", str(pyfeat / "single_face.jpg"),
                 "--driving", str(pyfeat / "single_face.mp4"), "--mode", "all-dynamic",
                 "--camera", "zoom-orbit", "--size", "96", "--frames", "9", "--npz",
                 "--landmarker", str(landmarker_path), "--out", str(out)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([*PREVIEW_FILES, ARRAYS_FILE])
    with np.load(out / "conditioning.npz", allow_pickle=False) as data:  # plain arrays only
        assert data["normals"].shape == (9, 96, 96, 3) and data["normals"].dtype == np.float32
        assert data["normals"].min() >= -1 and data["normals"].max() <= 1
        assert data["mask"].shape == (9, 96, 96) and data["mask"].dtype == bool
        assert data["rays"].shape == (9, 6, 96, 96)
        assert data["K"].shape == (9, 3, 3) and data["c2w"].shape == (9, 4, 4)
        assert data["head_pose"].shape == (9, 4, 4)
        assert data["blendshapes"].shape == (9, 52) and len(data["blendshape_names"]) == 52
        assert data["crops"].shape == (9, 224, 224, 3) and data["crops"].dtype == np.uint8
        assert str(data["mode"]) == "all-dynamic" and float(data["fps"]) == 16
        # all-dynamic: the driving clip's expression, not the portrait's (they differ by 0.88
        # in one blendshape in every frame of this clip, tracked on its own).
        portrait = _portrait_blendshapes(tracker, pyfeat)
        assert np.abs(data["blendshapes"] - portrait).max(axis=1).min() > 0.3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 9 and summary["mode"] == "all-dynamic"
    assert summary["driving_faces_tracked"] == 9 and summary["driving_frames_filled"] == 0
    assert summary["jitter_px"] <= summary["jitter_px_raw"]
    assert {"track driving", "normals", "write rays.mp4", "write normals.mp4"} <= set(
        summary["seconds"]
    )
    trajectory = json.loads((out / "trajectory.json").read_text())
    assert trajectory["trajectory"]["name"] == "zoom-orbit" and len(trajectory["c2w"]) == 9
    assert "9 frames at 96x96" in capsys.readouterr().out


def test_preview_camera_only_ignores_the_driving_clip(pyfeat, landmarker_path, tracker, tmp_path):
    out = tmp_path / "camera-only"
    code = main(["preview", "--portrait", str(pyfeat / "single_face.jpg"),
                 "--driving", str(pyfeat / "single_face.mp4"), "--mode", "camera-only",
                 "--camera", "orbit", "--size", "64", "--frames", "5", "--npz",
                 "--landmarker", str(landmarker_path), "--out", str(out)])  # fmt: skip
    assert code == 0
    with np.load(out / "conditioning.npz", allow_pickle=False) as data:
        # The portrait's own head pose (the identity) and expression in every frame.
        np.testing.assert_array_equal(data["head_pose"], np.broadcast_to(np.eye(4), (5, 4, 4)))
        np.testing.assert_allclose(
            data["blendshapes"],
            np.broadcast_to(_portrait_blendshapes(tracker, pyfeat), (5, 52)),
            atol=1e-6,
        )
        assert (data["crops"] == data["crops"][0]).all()


def test_preview_writes_no_arrays_unless_asked_and_videos_at_the_output_height(
    pyfeat, landmarker_path, tracker, tmp_path
):
    out = tmp_path / "small"
    code = main(["preview", "--portrait", str(pyfeat / "single_face.jpg"),
                 "--driving", str(pyfeat / "single_face.mp4"), "--mode", "frontal-dynamic",
                 "--size", "96", "--frames", "5",
                 "--landmarker", str(landmarker_path), "--out", str(out)])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(PREVIEW_FILES)  # no conditioning.npz
    assert ARRAYS_FILE not in json.loads((out / "summary.json").read_text())["files"]
    # The 640x360 driving clip is shown at the output's height, its aspect kept (width even):
    # 640 * 96 / 360 = 170.7 -> 170.
    assert read_video(out / "tracking.mp4").frames.shape == (5, 96, 170, 3)
    assert read_video(out / "normals.mp4").frames.shape == (5, 96, 96, 3)
    assert read_video(out / "rays.mp4").frames.shape == (5, 96, 192, 3)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "factorportrait", "preview", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--portrait", "{m}/free-mountain-vector-01.jpg", "--mode", "camera-only"],
            "error: portrait: no face found",
        ),
        (
            ["--portrait", "{m}/missing.jpg", "--mode", "camera-only"],
            "error: image missing.jpg: cannot read it",
        ),
        (
            ["--portrait", "{m}/single_face.mp4", "--mode", "camera-only"],
            "error: image single_face.mp4: not a supported image",
        ),
        (
            [
                "--portrait",
                "{m}/single_face.jpg",
                "--driving",
                "{m}/single_face.jpg",
                "--mode",
                "frontal-dynamic",
            ],
            "error: video single_face.jpg: this is a still image",
        ),
        (
            ["--portrait", "{m}/single_face.jpg", "--mode", "frontal-dynamic"],
            "error: mode frontal-dynamic: a driving video is needed",
        ),
        (
            ["--portrait", "{m}/single_face.jpg", "--mode", "camera-only", "--size", "100000"],
            "error: size: 100000 is outside",
        ),
        (
            ["--portrait", "{m}/single_face.jpg", "--mode", "camera-only", "--frames", "10"],
            "error: frames: 10 is not of the form 4k+1",
        ),
        (
            ["--portrait", "{m}/single_face.jpg", "--mode", "sideways"],
            "error: argument --mode: invalid choice",
        ),
        (
            [
                "--portrait",
                "{m}/single_face.jpg",
                "--mode",
                "frontal-dynamic",
                "--driving",
                "{m}/single_face.mp4",
                "--camera",
                "orbit",
            ],
            "error: --camera: mode frontal-dynamic keeps the camera still",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(pyfeat, landmarker_path, tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.format(m=pyfeat) for a in args]
    result = _run(*args, "--landmarker", str(landmarker_path), "--out", str(out))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_wan_animate_preview_is_made_as_wan_animate_will_make_the_video(
    pyfeat, landmarker_path, tmp_path, capsys
):
    """`preview --engine wan-animate --fps 16` previews what wan-animate will be given: its own
    frame rate (with the note) and its wider framing, not the request's 16 fps."""
    from factorportrait.engines import engine_info

    own = engine_info("wan-animate").default_fps()
    code = main(
        ["preview", "--engine", "wan-animate", "--portrait", str(pyfeat / "single_face.jpg"),
         "--mode", "camera-only", "--frames", "5", "--fps", "16", "--size", "64",
         "--landmarker", str(landmarker_path), "--out", str(tmp_path / "p")]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"{own:g} fps" in out and "instead of the 16 fps asked for" in out, out
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["fps"] == own, summary
