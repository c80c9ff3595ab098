"""Every shipped camera preset: valid, sampled cleanly, starting at the portrait's own view."""

import numpy as np
import pytest

from factorportrait.viewpoint import (
    PRESET_DIR,
    CameraView,
    Trajectory,
    TrajectoryError,
    load_preset,
    plucker_rays,
    preset_names,
    resolve_trajectory,
)

NAMES = preset_names()


def test_the_required_presets_exist():
    assert {"orbit", "dolly", "sweep"} <= set(NAMES)
    assert len(NAMES) >= 7  # orbit, dolly, sweep and at least three more, plus static


@pytest.mark.parametrize("name", NAMES)
def test_preset_validates_and_samples_49_frames(name):
    trajectory = load_preset(name)
    assert trajectory.name == name  # file name and "name" agree
    assert 10 <= len(trajectory.description) <= 120 and "\n" not in trajectory.description
    path = trajectory.sample(49)
    K, c2w = path.cameras(64, 64)
    rays = plucker_rays(K, c2w, 64, 64, reference_c2w=c2w[0])
    assert np.isfinite(c2w).all() and np.isfinite(rays).all()
    # Starts where the photo was taken from, so the first frame matches the portrait.
    start, portrait = path.view(0), CameraView()
    assert (start.azimuth, start.elevation, start.distance, start.roll, start.fov) == pytest.approx(
        (portrait.azimuth, portrait.elevation, portrait.distance, portrait.roll, portrait.fov)
    )


@pytest.mark.parametrize("name", [n for n in NAMES if n != "static"])
def test_moving_presets_move(name):
    path = load_preset(name).sample(49)
    c2w = path.c2w()
    travel = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1).sum()
    assert travel > 5.0  # cm


def test_dolly_zoom_keeps_the_face_size():
    path = load_preset("dolly-zoom").sample(49)
    visible_half_height = path.distance * np.tan(np.radians(path.fov) / 2)
    np.testing.assert_allclose(visible_half_height, visible_half_height[0], rtol=0.01)
    assert path.distance[-1] < 0.7 * path.distance[0]


def test_preset_files_are_canonical_json():
    # The files are exactly what the editor would save for them (so diffs stay clean).
    for name in NAMES:
        text = (PRESET_DIR / f"{name}.json").read_text()
        assert Trajectory.from_json(text).to_json() == text


def test_resolve_by_name_or_file(tmp_path):
    assert resolve_trajectory("sweep") == load_preset("sweep")
    path = tmp_path / "mine.json"
    path.write_text(load_preset("orbit").to_json())
    assert resolve_trajectory(path) == load_preset("orbit")
    with pytest.raises(TrajectoryError, match="neither a preset"):
        resolve_trajectory("no-such-preset")
    with pytest.raises(TrajectoryError, match="unknown camera preset"):
        load_preset("../README")
