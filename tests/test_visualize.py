"""Preview pictures of the viewpoint factor."""

import numpy as np

from factorportrait.viewpoint import (
    load_preset,
    orbit_c2w,
    plucker_rays,
    rays_to_rgb,
    trajectory_figure,
)


def test_rays_to_rgb_layout_and_colours():
    path = load_preset("dolly").sample(5)
    K, c2w = path.cameras(16, 24)
    rays = plucker_rays(K, c2w, 16, 24, reference_c2w=c2w[0])
    rgb = rays_to_rgb(rays)
    assert rgb.shape == (5, 16, 48, 3) and rgb.dtype == np.uint8
    # Left panel: directions as (d+1)/2 (the centre of the image looks down +z: blue).
    np.testing.assert_allclose(
        rgb[0, :, :24] / 255.0, (rays[0, 3:].transpose(1, 2, 0) + 1) / 2, atol=1 / 255
    )
    # Right panel: frame 0 has zero moment (flat grey), later frames do not.
    assert (rgb[0, :, 24:] == 128).all()
    assert np.abs(rgb[2, :, 24:].astype(int) - 128).max() > 20


def test_trajectory_figure_shows_head_path_and_frustums():
    path = load_preset("orbit").sample(49)
    K, c2w = path.cameras(512, 512)
    fig = trajectory_figure(K, c2w, 512, 512, title="orbit", max_frustums=8)
    names = [trace.name for trace in fig.data]
    reference = "reference camera (the portrait's)"
    assert names[0] == "head" and "path" in names and reference in names and "cameras" in names
    path_trace = fig.data[names.index("path")]
    np.testing.assert_allclose(np.array(path_trace.x), c2w[:, 0, 3])
    assert len(path_trace.z) == 49
    frustums = fig.data[names.index("cameras")]
    # Each frustum is 6 polylines, each ending in a None separator.
    assert list(frustums.x).count(None) == 6 * 8
    # The reference camera: the default view's unless another is given, and drawn where it is.
    marker = fig.data[names.index(reference)]
    np.testing.assert_allclose(marker.x[0], c2w[0, 0, 3], atol=1e-9)  # orbit starts there
    elsewhere = orbit_c2w(40.0, 10.0, 70.0)
    moved = trajectory_figure(K, c2w, 512, 512, reference_c2w=elsewhere)
    marker = moved.data[[trace.name for trace in moved.data].index(reference)]
    np.testing.assert_allclose((marker.x[0], marker.y[0], marker.z[0]), elsewhere[:3, 3], atol=1e-9)
    assert fig.layout.uirevision == "trajectory"
    # The head marker sits at the origin.
    head = fig.data[0]
    assert abs(np.mean(head.x)) < 0.5 and abs(np.mean(head.y)) < 0.5
