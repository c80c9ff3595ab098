"""The normal-map rasteriser against trimesh ray casting, and its z-buffer."""

import numpy as np
import pytest
import trimesh

from factorportrait.head_pose.rasterizer import normals_to_rgb, rasterize
from factorportrait.viewpoint import intrinsics_from_fov, invert_rigid, orbit_c2w

H, W = 96, 128


def _scene():
    """A lumpy closed mesh (a sphere with a box through it), flat-shaded: every triangle has its
    own vertices with the face normal, so interpolation must give exactly the face normal."""
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=6.0)
    sphere.vertices *= [1.0, 1.3, 0.9]
    box = trimesh.creation.box(extents=[3.0, 3.0, 16.0])
    box.apply_translation([2.0, -1.0, 0.0])
    mesh = trimesh.util.concatenate([sphere, box])
    mesh.unmerge_vertices()
    normals = np.repeat(mesh.face_normals, 3, axis=0)  # unmerged: vertex 3i+k belongs to face i
    return mesh, normals


@pytest.mark.parametrize(
    ("azimuth", "elevation", "roll"), [(0, 0, 0), (35, 20, 10), (-120, -40, 0)]
)
def test_agrees_with_trimesh_ray_casting(azimuth, elevation, roll):
    mesh, vertex_normals = _scene()
    c2w = orbit_c2w(azimuth, elevation, 40.0, roll)
    K = intrinsics_from_fov(35.0, H, W)
    w2c = invert_rigid(c2w)
    vertices_cam = mesh.vertices @ w2c[:3, :3].T + w2c[:3, 3]
    normals_cam = vertex_normals @ w2c[:3, :3].T
    result = rasterize(vertices_cam[None], normals_cam[None], mesh.faces, K[None], H, W)

    # Reference: one ray per pixel centre, first hit, in camera space.
    v, u = np.mgrid[0:H, 0:W] + 0.5
    directions = np.stack(
        [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1
    ).reshape(-1, 3)
    camera_mesh = trimesh.Trimesh(vertices_cam, mesh.faces, process=False)
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(camera_mesh)
    locations, rays, triangles = intersector.intersects_location(
        np.zeros_like(directions), directions, multiple_hits=False
    )
    reference_mask = np.zeros(H * W, bool)
    reference_mask[rays] = True

    mask = result.mask[0].reshape(-1)
    disagree = (mask != reference_mask).sum()
    assert disagree <= 0.01 * reference_mask.sum()  # only along silhouette edges
    assert reference_mask.sum() > 500

    both = mask[rays]
    depth = result.depth[0].reshape(-1)[rays][both]
    relative_error = np.abs(depth - locations[both, 2]) / locations[both, 2]
    # Exact to float32 almost everywhere; a handful of pixels lie where the box pierces the
    # sphere and the two surfaces are within rounding of each other.
    assert (relative_error < 1e-4).mean() > 0.99 and relative_error.max() < 1e-2
    normals = result.normals[0].reshape(-1, 3)[rays][both]
    reference_normals = camera_mesh.face_normals[triangles[both]]
    agree = (normals * reference_normals).sum(1) > 0.9999
    assert agree.mean() > 0.98  # the odd pixel on an edge between two faces may differ


def test_nearest_surface_wins_and_back_faces_are_culled():
    # Two parallel squares facing the camera at z = 10 and z = 20, the far one drawn first.
    square = np.array([[-50, -50, 0], [50, -50, 0], [50, 50, 0], [-50, 50, 0]], float)
    faces = np.array([[0, 2, 1], [0, 3, 2]])  # outward normal -z: towards the camera
    vertices = np.concatenate([square + [0, 0, 20], square + [45, 0, 10]])
    all_faces = np.concatenate([faces, faces + 4])
    normals = np.concatenate([np.tile([0, 0, -1.0], (4, 1)), np.tile([0, 0, -1.0], (4, 1))])
    K = intrinsics_from_fov(60.0, 32, 32)[None]
    result = rasterize(vertices[None], normals[None], all_faces, K, 32, 32)
    assert result.mask[0].all()
    assert result.depth[0, 16, 16] == pytest.approx(10.0)
    assert result.depth[0, 16, 1] == pytest.approx(20.0)  # the near square is shifted right
    # Reverse the winding: the squares face away and are culled.
    culled = rasterize(vertices[None], normals[None], all_faces[:, ::-1], K, 32, 32)
    assert not culled.mask.any()


def test_the_geometric_engine_draws_the_same_triangles():
    """Both rasterisers draw with one traversal (head_pose.rasterizer.draw_triangles): with
    every triangle culled, the geometric engine's coverage and depth are the normal maps', bit
    for bit; not culling a triangle lets its back face be seen."""
    from factorportrait.engines.geometry.raster import render_attributes

    mesh, vertex_normals = _scene()
    w2c = invert_rigid(orbit_c2w(35, 20, 40.0, 10))
    vertices = mesh.vertices @ w2c[:3, :3].T + w2c[:3, 3]
    normals = vertex_normals @ w2c[:3, :3].T
    K = intrinsics_from_fov(35.0, H, W)
    maps = rasterize(vertices[None], normals[None], mesh.faces, K[None], H, W)
    cull = np.ones(len(mesh.faces), bool)
    attributes, depth, winner = render_attributes(vertices, normals, mesh.faces, cull, K, H, W)
    np.testing.assert_array_equal(winner >= 0, maps.mask[0])
    np.testing.assert_array_equal(depth, maps.depth[0])
    # Flat-shaded (vertex 3i+k is face i's): each pixel gets its winning face's normal.
    drawn = winner >= 0
    np.testing.assert_allclose(attributes[drawn], normals[3 * winner[drawn]], atol=1e-6)
    # A square facing away: culled, not drawn; not culled, drawn (its back seen).
    square = np.array([[-50, -50, 0], [50, -50, 0], [50, 50, 0], [-50, 50, 0]], float)
    away = np.array([[0, 1, 2], [0, 2, 3]])
    K = intrinsics_from_fov(60.0, 32, 32)
    for culled, seen in ((True, False), (False, True)):
        _, depth, winner = render_attributes(
            square + [0, 0, 10], np.zeros((4, 1)), away, np.full(2, culled), K, 32, 32
        )
        assert (winner >= 0).all() == seen and (winner < 0).all() != seen
        assert np.allclose(depth[winner >= 0], 10.0) and (depth[winner < 0] == 0).all()


def test_behind_the_camera_is_not_drawn_and_rgb_encoding():
    triangle = np.array([[[-1, -1, -5], [1, -1, -5], [0, 1, -5]]], float)
    K = intrinsics_from_fov(60.0, 16, 16)[None]
    result = rasterize(triangle, np.tile([0, 0, -1.0], (1, 3, 1)), np.array([[0, 2, 1]]), K, 16, 16)
    assert not result.mask.any()
    rgb = normals_to_rgb(np.array([[[[0, 0, -1.0], [1, 0, 0]]]]), np.array([[[True, False]]]))
    np.testing.assert_array_equal(rgb[0, 0], [[128, 128, 0], [0, 0, 0]])


def test_posed_template_agrees_with_trimesh_ray_casting(landmarker_path):
    """The upper-body template through ``render_head``: the head turned, the body not, the neck
    buried in the head; the first surface along each pixel's ray wins."""
    from scipy.spatial.transform import Rotation

    from factorportrait.head_pose import build_head_template, load_canonical_face, render_head

    template = build_head_template(load_canonical_face(str(landmarker_path)))
    head_pose = np.eye(4)
    head_pose[:3, :3] = Rotation.from_euler("yx", [30.0, 10.0], degrees=True).as_matrix()
    c2w = orbit_c2w(20.0, 5.0, 70.0, 0.0)
    K = intrinsics_from_fov(30.0, H, W)
    result = render_head(template, head_pose[None], K[None], c2w[None], H, W)

    w2c = invert_rigid(c2w)
    world = np.concatenate(
        [
            template.head_vertices @ head_pose[:3, :3].T + head_pose[:3, 3],
            template.body_vertices,
        ]
    )
    faces = np.concatenate([template.head_faces, template.body_faces + len(template.head_vertices)])
    camera_mesh = trimesh.Trimesh(world @ w2c[:3, :3].T + w2c[:3, 3], faces, process=False)
    v, u = np.mgrid[0:H, 0:W] + 0.5
    directions = np.stack(
        [(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1
    ).reshape(-1, 3)
    locations, rays, _ = trimesh.ray.ray_triangle.RayMeshIntersector(
        camera_mesh
    ).intersects_location(np.zeros_like(directions), directions, multiple_hits=False)
    reference_mask = np.zeros(H * W, bool)
    reference_mask[rays] = True
    mask = result.mask[0].reshape(-1)
    assert reference_mask.sum() > 0.2 * H * W
    assert (mask != reference_mask).sum() <= 0.01 * reference_mask.sum()
    both = mask[rays]
    depth = result.depth[0].reshape(-1)[rays][both]
    relative_error = np.abs(depth - locations[both, 2]) / locations[both, 2]
    # Looser than the lumpy scene's 1e-4: the face's triangles are under a pixel here, where
    # float32 barycentrics lose a few digits (1e-3 of 70 cm is 0.7 mm).
    assert (relative_error < 1e-3).mean() > 0.99 and relative_error.max() < 2e-2
    # Without depth maps (what the conditioning asks for): the same normals and mask, drawn
    # with each thread's scratch z-buffer.
    two = render_head(
        template, np.stack([head_pose, np.eye(4)]), np.stack([K, K]), np.stack([c2w, c2w]), H, W
    )
    lean = render_head(
        template, np.stack([head_pose, np.eye(4)]), np.stack([K, K]), np.stack([c2w, c2w]), H, W,
        depth=False,
    )  # fmt: skip
    assert lean.depth is None and two.mask[1].sum() > 0.2 * H * W
    np.testing.assert_array_equal(lean.mask, two.mask)
    np.testing.assert_array_equal(lean.normals, two.normals)
    # Only the colours (what a preview shows): the same pictures as colouring the float maps.
    pictures = render_head(
        template, np.stack([head_pose, np.eye(4)]), np.stack([K, K]), np.stack([c2w, c2w]), H, W,
        depth=False, colours=True,
    )  # fmt: skip
    assert pictures.normals is None and pictures.colours.dtype == np.uint8
    np.testing.assert_array_equal(pictures.mask, two.mask)
    np.testing.assert_array_equal(pictures.colours, normals_to_rgb(two.normals, two.mask))
    np.testing.assert_array_equal(pictures.to_rgb(), two.to_rgb())
