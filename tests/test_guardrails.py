"""Trained ranges and the request warnings, on cameras and head poses with known answers, and
on the bundled example as the demo builds it."""

import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.errors import InputError
from factorportrait.modes import Mode
from factorportrait.planning.guardrails import (
    TRAINED_RANGES_FILE,
    TrainedRanges,
    load_trained_ranges,
    ranges_from_samples,
    request_warnings,
    save_trained_ranges,
)
from factorportrait.viewpoint import load_preset
from factorportrait.viewpoint.geometry import intrinsics_from_fov, orbit_c2w

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
# A portrait taken from above and to the side, as the bundled example is (its camera sits some
# 14 degrees above the head frame's horizon).
REFERENCE = (10.0, 14.0, 60.0)  # azimuth, elevation, distance (cm)


def _request(mode, views, *, head_turns=None, fov=30.0):
    """A Conditioning's camera and head fields: cameras at (azimuth, elevation, distance
    factor) offsets from REFERENCE; head turns as (F, 3) rotation vectors in degrees about the
    reference camera's own axes (x right, y down, z forward), none by default."""
    az0, el0, d0 = REFERENCE
    views = np.asarray(views, np.float64)
    c2w = orbit_c2w(az0 + views[:, 0], el0 + views[:, 1], d0 * views[:, 2])
    reference = orbit_c2w(az0, el0, d0)
    head_pose = np.tile(np.eye(4), (len(views), 1, 1))
    if head_turns is not None:
        camera = reference[:3, :3]
        turns = Rotation.from_rotvec(np.radians(head_turns)).as_matrix()
        head_pose[:, :3, :3] = camera @ turns @ camera.T  # turned about the camera's axes
    return SimpleNamespace(
        mode=Mode(mode),
        c2w=c2w,
        K=intrinsics_from_fov(np.full(len(views), fov), SIZE, SIZE),
        head_pose=head_pose,
        reference_c2w=reference,
        height=SIZE,
        width=SIZE,
    )


def test_orbit_elevation_is_judged_from_the_portraits_own_camera():
    # The orbit preset's elevations (0 up to 20 degrees from the photo's view) around a portrait
    # taken from 14 degrees above: 14 to 34 in the head frame, but 0 to 20 from the portrait.
    orbit = _request("camera-only", [(0, 0, 1), (30, 10, 1), (0, 20, 1), (-30, 10, 1)])
    assert request_warnings(orbit, None, None) == []
    tight = TrainedRanges(camera_elevation_deg=(-10.0, 10.0))
    assert request_warnings(orbit, None, tight) == [
        "The camera goes to elevation 0 to 20 degrees from the portrait's view; "
        "the model was trained on -10 to 10."
    ]


def test_a_value_at_the_edge_of_a_range_is_inside_it():
    at_edge = _request("novel-dynamic", [(-60, 30, 1.6)] * 3)
    assert request_warnings(at_edge, None, None) == []  # the defaults stop at -60, 30 and 1.6
    past = _request("novel-dynamic", [(-61, 0, 1)] * 3)
    assert request_warnings(past, None, None) == [
        "The camera goes to azimuth -61 to -61 degrees from the portrait's view; "
        "the model was trained on -60 to 60."
    ]


def test_azimuth_is_measured_the_short_way_round():
    # From 170 degrees to -170 (= 190) is 20 degrees, not -340.
    views = [(0, 0, 1), (20, 0, 1)]
    wrapped = _request("camera-only", views)
    wrapped.reference_c2w = orbit_c2w(170.0, 0.0, 60.0)
    wrapped.c2w = orbit_c2w(np.array([170.0, -170.0]), 0.0, 60.0)
    assert request_warnings(wrapped, None, TrainedRanges(camera_azimuth_deg=(0, 25))) == []


def test_a_moving_camera_is_no_head_turn():
    # camera-only and all-dynamic with a still head: the cameras sweep 120 degrees round the
    # head, and no head range, however tight, is left.
    sweep = [(-60, 0, 1), (0, 0, 1), (60, 0, 1)]
    still = TrainedRanges(head_yaw_deg=(-1, 1), head_pitch_deg=(-1, 1))
    for mode in ("camera-only", "all-dynamic"):
        assert request_warnings(_request(mode, sweep), None, still) == []


def test_the_driven_heads_own_turns_are_reported():
    # The head turns 50 degrees about the camera's vertical (yaw) and 40 up about its
    # horizontal (pitch), from its pose in the first frame.
    turns = [(0, 0, 0), (0, 25, 0), (0, 50, 0), (-40, 0, 0)]
    head = _request("frontal-dynamic", [(0, 0, 1)] * 4, head_turns=turns)
    assert request_warnings(head, None, None) == [
        "The driven head turns 0 to 50 degrees; the model was trained on -45 to 45.",
        "The driven head nods -40 to 0 degrees; the model was trained on -30 to 30.",
    ]
    # The same driving in camera-only: the head keeps the photo's pose, nothing is reported.
    head.mode = Mode.CAMERA_ONLY
    assert request_warnings(head, None, None) == []


def test_distance_and_field_of_view_are_checked():
    dolly = _request("camera-only", [(0, 0, 1), (0, 0, 0.5)])
    assert request_warnings(dolly, None, None) == [
        "The camera goes to 0.50 to 1.00 times the portrait's distance; "
        "the model was trained on 0.60 to 1.60."
    ]
    wide = _request("camera-only", [(0, 0, 1)] * 2, fov=48.0)
    assert request_warnings(wide, None, None) == [
        "The field of view goes to 48 to 48 degrees; the model was trained on 30 to 30."
    ]
    assert request_warnings(wide, None, TrainedRanges(fov_deg=(20, 50))) == []


def test_trained_ranges_round_trip_through_a_checkpoint_folder(tmp_path):
    assert load_trained_ranges(tmp_path) is None  # a checkpoint that records none
    ranges = TrainedRanges(head_yaw_deg=(-20, 35.5), fov_deg=(25, 40))
    path = save_trained_ranges(ranges, tmp_path)
    assert path == tmp_path / TRAINED_RANGES_FILE
    assert load_trained_ranges(tmp_path) == ranges
    path.write_text('{"version": 1, "head_yaw_deg": [10, -10]}')
    with pytest.raises(InputError, match="not a trained-ranges file"):
        load_trained_ranges(tmp_path)


def _row(yaw, pitch, azimuth, elevation, distance, fov):
    """A prepared sample's metadata, as strings, the way prepare's index stores it."""
    values = {
        "head_yaw_deg": yaw,
        "head_pitch_deg": pitch,
        "camera_azimuth_deg": azimuth,
        "camera_elevation_deg": elevation,
        "camera_distance_ratio": distance,
    }
    row = {"path": "samples/x.safetensors", "fov_deg": str(fov)}
    for name, (low, high) in values.items():
        row[f"{name}_min"], row[f"{name}_max"] = str(low), str(high)
    return row


def test_ranges_from_samples_span_every_row_that_carries_them():
    rows = [
        _row((-10, 20), (-5, 5), (0, 0), (0, 0), (1, 1), 30),
        _row((-30, 5), (-2, 12), (-40, 25), (-5, 15), (0.8, 1.2), 24),
        {"path": "samples/old.safetensors", "head_yaw_deg_min": "-90"},  # older data: skipped
    ]
    assert ranges_from_samples(rows) == TrainedRanges(
        head_yaw_deg=(-30, 20),
        head_pitch_deg=(-5, 12),
        camera_azimuth_deg=(-40, 25),
        camera_elevation_deg=(-5, 15),
        camera_distance_ratio=(0.8, 1.2),
        fov_deg=(24, 30),
    )
    assert ranges_from_samples([rows[2]]) == TrainedRanges()  # nothing recorded: defaults


# ---------------------------------------------------------------- the bundled example, built
@pytest.fixture(scope="module")
def example(tracker):
    def build(mode, trajectory=None, driving=None, frames=9, **novel):
        settings = ConditioningSettings(mode=mode, frames=frames, height=SIZE, width=SIZE, **novel)
        return build_conditioning(
            ROOT / "assets/example_portrait.jpg",
            driving,
            settings=settings,
            trajectory=trajectory,
            tracker=tracker,
        )

    return build


def test_the_default_orbit_on_the_example_opens_without_a_warning(example):
    orbit = load_preset("orbit")
    assert request_warnings(example("camera-only", orbit), orbit, None) == []


def test_the_novel_views_slider_limit_on_the_example_is_inside_the_range(example):
    driving = ROOT / "assets/example_driving.mp4"
    cond = example("novel-dynamic", driving=driving, novel_azimuth=-60.0)
    assert not any("camera" in w for w in request_warnings(cond, None, None))
    narrower = TrainedRanges(camera_azimuth_deg=(-45, 45))
    assert (
        "The camera goes to azimuth -60 to -60 degrees from the portrait's view; "
        "the model was trained on -45 to 45."
    ) in request_warnings(cond, None, narrower)


SHIPPED_PRESETS = sorted(path.stem for path in (ROOT / "camera_presets").glob("*.json"))
EXAMPLE_CLIPS = ["assets/example_driving.mp4", "assets/example_expressive.mp4"]


@pytest.mark.parametrize("name", SHIPPED_PRESETS)
def test_every_shipped_preset_on_the_example_is_inside_the_default_ranges(example, name):
    # 17 frames land on every keyframe of the eight-keyframe presets (orbit, figure-eight).
    preset = load_preset(name)
    said = request_warnings(example("camera-only", preset, frames=17), preset, None)
    if name == "dolly-zoom":  # a wider lens is what it is for: training has one field of view
        assert said == [
            "The field of view goes to 30 to 48 degrees; the model was trained on 30 to 30."
        ]
    else:
        assert said == []


@pytest.mark.parametrize("clip", EXAMPLE_CLIPS)
def test_the_example_clips_drive_the_head_inside_the_default_ranges(example, clip):
    orbit = load_preset("orbit")
    for mode, trajectory in (("frontal-dynamic", None), ("all-dynamic", orbit)):
        cond = example(mode, trajectory, driving=ROOT / clip, frames=17)
        assert request_warnings(cond, trajectory, None) == [], mode


def test_the_novel_view_sliders_limits_are_inside_and_a_step_past_is_not(example):
    # The sliders stop where the default ranges do: every corner of the box is inside ...
    clip = ROOT / EXAMPLE_CLIPS[1]
    for azimuth, elevation, distance in ((-60, -30, 0.6), (60, 30, 1.6)):
        view = {"novel_azimuth": azimuth, "novel_elevation": elevation}
        cond = example("novel-dynamic", driving=clip, novel_distance=distance, **view)
        assert request_warnings(cond, None, None) == [], (azimuth, elevation, distance)
    # ... and one slider step beyond an edge is out, and named as the camera's.
    for view, expected in (
        ({"novel_azimuth": 61.0}, "The camera goes to azimuth 61 to 61 degrees"),
        ({"novel_elevation": -31.0}, "The camera goes to elevation -31 to -31 degrees"),
        ({"novel_distance": 1.65}, "The camera goes to 1.65 to 1.65 times the portrait's"),
    ):
        said = request_warnings(example("novel-dynamic", driving=clip, **view), None, None)
        assert len(said) == 1 and said[0].startswith(expected), said


def test_in_camera_only_the_warning_names_the_camera_not_the_head(example):
    # A head range that leaves out 0 (the first frame's own turn, by definition) and a camera
    # range narrower than the sweep's -35 to 35 degrees round the head.
    narrow = TrainedRanges(camera_azimuth_deg=(-20, 20), head_yaw_deg=(5, 10))
    sweep = load_preset("sweep")
    driving = ROOT / EXAMPLE_CLIPS[0]
    camera = (
        "The camera goes to azimuth -35 to 35 degrees from the portrait's view; "
        "the model was trained on -20 to 20."
    )
    # camera-only: the head holds the photo's pose whatever the clip does; only the camera.
    cond = example("camera-only", sweep, driving=driving, frames=17)  # t = 0.25, 0.75 sampled
    assert request_warnings(cond, sweep, narrow) == [camera]
    # all-dynamic: the clip drives the head too, and that warning names the head.
    said = request_warnings(
        example("all-dynamic", sweep, driving=driving, frames=17), sweep, narrow
    )
    assert said[0] == camera and len(said) == 2
    assert said[1].startswith("The driven head turns ") and said[1].endswith("trained on 5 to 10.")


# ------------------------------------------------- the CLI and the Python API say it too
def test_the_python_api_warns_when_a_request_leaves_the_checkpoints_ranges(example, tmp_path):
    from factorportrait.pipelines.checkpoints import make_tiny_checkpoint
    from factorportrait.pipelines.generation import generate_frames, load_pipeline
    from factorportrait.planning.guardrails import TrainedRangeWarning

    folder = make_tiny_checkpoint(tmp_path / "tiny")
    cond = example("camera-only", load_preset("orbit"))  # the orbit reaches 30 degrees
    pipeline = load_pipeline(folder, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainedRangeWarning)  # the defaults cover the orbit
        generate_frames(pipeline, cond, steps=1)
    save_trained_ranges(TrainedRanges(camera_azimuth_deg=(-10, 10)), folder)
    pipeline = load_pipeline(folder, device="cpu")
    with pytest.warns(TrainedRangeWarning, match="azimuth .* the model was trained on -10 to 10"):
        generate_frames(pipeline, cond, steps=1)


def test_the_cli_preview_warns_outside_the_default_ranges(tmp_path, landmarker_path):
    args = [
        "--portrait",
        str(ROOT / "assets/example_portrait.jpg"),
        "--driving",
        str(ROOT / "assets/example_driving.mp4"),
        "--frames",
        "5",
        "--size",
        "64",
        "--landmarker",
        str(landmarker_path),
        "--mode",
        "novel-dynamic",
    ]
    inside = _preview(*args, "--elevation", "20", "--out", str(tmp_path / "inside"))
    outside = _preview(*args, "--elevation", "40", "--out", str(tmp_path / "outside"))
    assert inside.returncode == outside.returncode == 0, outside.stderr
    assert "warning: The camera goes to elevation" not in inside.stderr
    assert (
        "warning: The camera goes to elevation 40 to 40 degrees from the portrait's view; "
        "the model was trained on -30 to 30."
    ) in outside.stderr


def _preview(*args):
    return subprocess.run(
        [sys.executable, "-m", "factorportrait", "preview", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
