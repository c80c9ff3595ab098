"""Trajectory schema (strict, clear messages) and interpolation (through keyframes, smooth)."""

import json

import numpy as np
import pytest

from factorportrait.config import LIMITS
from factorportrait.viewpoint import CameraView, Trajectory, TrajectoryError


def _keyframe(t, azimuth=0.0, elevation=0.0, distance=1.0, roll=0.0, fov=30.0):
    return {
        "t": t,
        "azimuth": azimuth,
        "elevation": elevation,
        "distance": distance,
        "roll": roll,
        "fov": fov,
    }


def _document(**overrides):
    doc = {
        "version": 1,
        "name": "test",
        "description": "a test path",
        "anchor": "portrait",
        "easing": "linear",
        "keyframes": [
            _keyframe(0.0),
            _keyframe(0.25, 30, 10),
            _keyframe(0.5, 0, 20, 0.8),
            _keyframe(1.0, -30, 5, 1.2, 10, 40),
        ],
    }
    doc.update(overrides)
    return doc


def test_passes_through_keyframes():
    trajectory = Trajectory.from_dict(_document())
    path = trajectory.sample(
        9
    )  # frame times 0, 1/8, ..., so t = 0, .25, .5, 1 are frames 0, 2, 4, 8
    base = CameraView()
    for frame, key in zip([0, 2, 4, 8], trajectory.keyframes, strict=True):
        assert path.azimuth[frame] == pytest.approx(base.azimuth + key.azimuth)
        assert path.elevation[frame] == pytest.approx(base.elevation + key.elevation)
        assert path.distance[frame] == pytest.approx(base.distance * key.distance)
        assert path.roll[frame] == pytest.approx(key.roll)
        assert path.fov[frame] == pytest.approx(key.fov)


@pytest.mark.parametrize("frames", [1, 2, 5, 49, 121])
def test_samples_to_any_number_of_frames(frames):
    path = Trajectory.from_dict(_document()).sample(frames)
    assert len(path) == frames
    K, c2w = path.cameras(64, 64)
    assert K.shape == (frames, 3, 3) and c2w.shape == (frames, 4, 4)
    assert np.isfinite(c2w).all()


def _kink(values, index, frames):
    """Jump in slope at ``index``, relative to the steepest slope of the path."""
    dt = 1.0 / (frames - 1)
    left = (values[index] - values[index - 1]) / dt
    right = (values[index + 1] - values[index]) / dt
    return abs(left - right) / max(1.0, np.abs(np.diff(values)).max() / dt)


def test_no_kinks_at_keyframes():
    trajectory = Trajectory.from_dict(_document())
    frames = 8001
    path = trajectory.sample(frames)
    for key in trajectory.keyframes[1:-1]:
        index = round(key.t * (frames - 1))
        for name in ("azimuth", "elevation", "distance", "roll", "fov"):
            assert _kink(getattr(path, name), index, frames) < 0.01, (name, key.t)
    # The same measure does see the kink of piecewise-linear interpolation.
    linear = np.interp(np.linspace(0, 1, frames), [0, 0.25, 0.5, 1], [0, 30, 0, -30])
    assert _kink(linear, 2000, frames) > 0.5


def test_interpolation_never_overshoots_the_keyframes():
    doc = _document(
        keyframes=[
            _keyframe(0, elevation=0),
            _keyframe(0.3, elevation=85),
            _keyframe(0.35, elevation=85),
            _keyframe(1, elevation=-85),
        ]
    )
    path = Trajectory.from_dict(doc).sample(997)
    assert path.elevation.max() <= 85 + 1e-9 and path.elevation.min() >= -85 - 1e-9


def test_ease_in_out_starts_and_stops_at_rest():
    doc = _document(easing="ease-in-out", keyframes=[_keyframe(0), _keyframe(1, azimuth=40)])
    path = Trajectory.from_dict(doc).sample(101)
    steps = np.diff(path.azimuth)
    assert steps[0] < 0.05 * steps.max() and steps[-1] < 0.05 * steps.max()
    assert path.azimuth[50] == pytest.approx(20.0)


def test_static_camera_is_constant():
    path = Trajectory.static(azimuth=20, elevation=-5, distance=1.5).sample(
        13, CameraView(distance=50)
    )
    np.testing.assert_allclose(path.azimuth, 20)
    np.testing.assert_allclose(path.elevation, -5)
    np.testing.assert_allclose(path.distance, 75)
    c2w = path.c2w()
    np.testing.assert_allclose(c2w, np.broadcast_to(c2w[0], c2w.shape))


def test_head_anchor_is_absolute():
    doc = _document(anchor="head", keyframes=[_keyframe(0, 10, 0, 55), _keyframe(1, 10, 0, 55)])
    path = Trajectory.from_dict(doc).sample(3, CameraView(azimuth=40, distance=90))
    np.testing.assert_allclose(path.azimuth, 10)
    np.testing.assert_allclose(path.distance, 55)


def test_portrait_anchor_refuses_offsets_past_the_pole():
    trajectory = Trajectory.from_dict(_document())  # reaches +20 elevation
    with pytest.raises(TrajectoryError, match=r"elevation reaches 95\.0"):
        trajectory.sample(49, CameraView(elevation=75))


def test_json_round_trip():
    trajectory = Trajectory.from_dict(_document())
    assert Trajectory.from_json(trajectory.to_json()) == trajectory


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["keyframes"][1].pop("fov"), r"keyframes\[1\]\.fov: required field is missing"),
        (lambda d: d.pop("version"), r"^version: required field is missing"),
        (lambda d: d.update(version=2), r"^version: input should be 1"),
        (
            lambda d: d["keyframes"][2].update(azimuth="30"),
            r"keyframes\[2\]\.azimuth: input should be a valid number",
        ),
        (
            lambda d: d["keyframes"][2].update(elevation=True),
            r"keyframes\[2\]\.elevation: input should be a valid number",
        ),
        (
            lambda d: d["keyframes"][1].update(azimuth=float("nan")),
            r"keyframes\[1\]\.azimuth: input should be a finite number",
        ),
        (
            lambda d: d["keyframes"][3].update(distance=float("inf")),
            r"keyframes\[3\]\.distance: input should be a finite number",
        ),
        (
            lambda d: d["keyframes"][0].update(fov=250),
            r"keyframes\[0\]\.fov: input should be less than or equal to 120 \(got 250\)",
        ),
        (
            lambda d: d["keyframes"][0].update(fov=0),
            r"keyframes\[0\]\.fov: input should be greater than or equal to 5",
        ),
        (
            lambda d: d["keyframes"][2].update(distance=40),
            r"keyframes\[2\]\.distance: 40(\.0)? is outside \[0\.25, 4\.0\]",
        ),
        (
            lambda d: d["keyframes"][2].update(distance=-1),
            r"keyframes\[2\]\.distance: input should be greater than 0",
        ),
        (
            lambda d: d.update(anchor="head"),
            r"keyframes\[0\]\.distance: 1(\.0)? is outside \[10\.0, 500\.0\] cm",
        ),
        (
            lambda d: d["keyframes"][1].update(elevation=90.5),
            r"keyframes\[1\]\.elevation: input should be less than or equal to 89",
        ),
        (
            lambda d: d["keyframes"][2].update(t=0.1),
            r"keyframes\[2\]\.t: times must increase strictly",
        ),
        (lambda d: d["keyframes"][0].update(t=0.1), r"keyframes\[0\]\.t: must be 0"),
        (
            lambda d: d["keyframes"][3].update(t=0.9),
            r"keyframes\[3\]\.t: the last keyframe must be at 1",
        ),
        (
            lambda d: d["keyframes"][1].update(zoom=2),
            r"keyframes\[1\]\.zoom: extra inputs are not permitted",
        ),
        (lambda d: d.update(keyframes=[]), r"^keyframes: list should have at least 1 item"),
        (
            lambda d: d.update(easing="bounce"),
            r"^easing: input should be 'linear' or 'ease-in-out'",
        ),
        (lambda d: d.update(name="../etc/passwd"), r"^name: string should match pattern"),
        (
            lambda d: d.update(description="two\nlines"),
            r"^description: string should match pattern",
        ),
    ],
)
def test_invalid_documents_name_the_bad_field(mutate, message):
    doc = json.loads(json.dumps(_document()))
    mutate(doc)
    with pytest.raises(TrajectoryError, match=message):
        Trajectory.from_dict(doc)


def test_invalid_json_text():
    with pytest.raises(TrajectoryError, match="not valid JSON"):
        Trajectory.from_json('{"version": 1,')
    with pytest.raises(TrajectoryError, match="finite number"):
        Trajectory.from_json(json.dumps(_document()).replace('"azimuth": 30', '"azimuth": NaN'))
    with pytest.raises(TrajectoryError, match="trajectory: input should be an object"):
        Trajectory.from_json("[1, 2]")


def test_oversize_documents_are_refused_before_parsing(tmp_path):
    text = json.dumps(_document(description="")) + " " * LIMITS.max_trajectory_bytes
    with pytest.raises(TrajectoryError, match="over the 65536-byte limit"):
        Trajectory.from_json(text)
    path = tmp_path / "big.json"
    path.write_text(text)
    with pytest.raises(TrajectoryError, match="over the 65536-byte limit"):
        Trajectory.from_file(path)


def test_too_many_keyframes():
    keys = [_keyframe(i / 99) for i in range(100)]
    keys[-1]["t"] = 1.0
    with pytest.raises(TrajectoryError, match="keyframes: list should have at most 64 items"):
        Trajectory.from_dict(_document(keyframes=keys))


def test_missing_file_message(tmp_path):
    with pytest.raises(TrajectoryError, match="No such file"):
        Trajectory.from_file(tmp_path / "nope.json")
