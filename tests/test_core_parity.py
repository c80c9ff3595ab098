"""One core for training and inference: a training sample's conditioning equals inference's
conditioning for the equivalent request, and the viewpoint and head translation carry what
they should (ARCHITECTURE.md: The conditioning core).

Parity tolerances, and why:
- expression inputs (blendshapes, crops, crop landmarks): exactly equal. The same frames go
  through the same tracker calls and the same crop code.
- head poses: 1e-9 cm / 1e-9 in rotation. Training composes the same stages, but the absolute
  retargeting turns each rotation through a rotation vector and back (round-off ~1e-15).
- rays: 1e-6. float32 maps of the same cameras.
- normals: where both masks are set, 1e-4; masks may disagree on at most 0.1% of pixels. A
  pose that differs by round-off can move a triangle edge across a pixel centre.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.linalg import rq
from scipy.spatial.transform import Rotation

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.io.media import VideoFrames, read_image, read_video
from factorportrait.modes import Mode
from factorportrait.training.samples import build_sample_conditioning
from factorportrait.viewpoint import invert_rigid, orbit_c2w
from factorportrait.viewpoint.paths import view_of_camera

SIZE, FPS, FRAMES = 64, 8.0, 9
FACE_CENTRE = (240, 170)  # in the 512x512 example portrait


def _clip(frames: np.ndarray) -> VideoFrames:
    """Target frames as a driving clip at the output times."""
    return VideoFrames(
        frames=frames,
        times=np.arange(len(frames)) / FPS,
        declared_fps=FPS,
        source_size=(frames.shape[2], frames.shape[1]),
        rotation=0,
        has_audio=False,
    )


def _warped(image, angles_deg, scales):
    return np.stack(
        [
            cv2.warpAffine(
                image,
                cv2.getRotationMatrix2D(FACE_CENTRE, float(a), float(s)),
                (image.shape[1], image.shape[0]),
                borderMode=cv2.BORDER_REFLECT,
            )
            for a, s in zip(angles_deg, scales, strict=True)
        ]
    )


def _roll_cameras(angles_deg):
    """A camera turning clockwise about its viewing axis (OpenCV axes): the picture turns the
    other way, as ``_warped`` with the same angles does."""
    c2w = np.tile(np.eye(4), (len(angles_deg), 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler(
        "z", np.asarray(angles_deg)[:, None], degrees=True
    ).as_matrix()
    return c2w


def _settings(**overrides):
    return ConditioningSettings(frames=FRAMES, fps=FPS, height=SIZE, width=SIZE, **overrides)


def _equivalent_request(sample, reference_image, target_frames, tracker, *, recorded: bool):
    """Inference asked for what the sample teaches: portrait = its reference image, driving =
    its target frames, its mode, the driving head's own pose (absolute); for recorded cameras,
    those cameras (relative to the reference camera) for both the output and the driving."""
    cond = sample.conditioning
    relative = invert_rigid(cond.reference_c2w) @ cond.c2w
    return build_conditioning(
        reference_image,
        _clip(target_frames),
        settings=_settings(mode=cond.mode, relative_pose=False),
        tracker=tracker,
        cameras=(cond.K, relative) if recorded else None,
        driving_cameras=relative if recorded else None,
    )


def _assert_parity(train, infer):
    assert train.mode == infer.mode
    for name in ("blendshapes", "crops", "crop_landmarks", "reference", "K"):
        np.testing.assert_array_equal(getattr(train, name), getattr(infer, name), err_msg=name)
    np.testing.assert_allclose(train.reference_c2w, infer.reference_c2w, atol=1e-12)
    np.testing.assert_allclose(train.c2w, infer.c2w, atol=1e-9)
    np.testing.assert_allclose(train.head_pose, infer.head_pose, atol=1e-9)
    np.testing.assert_allclose(train.rays, infer.rays, atol=1e-6)
    disagree = (train.mask != infer.mask).mean()
    assert disagree <= 1e-3, disagree
    both = train.mask & infer.mask
    assert both.sum() > 0.05 * both.size  # the head is in the picture
    np.testing.assert_allclose(train.normals[both], infer.normals[both], atol=1e-4)


def test_parity_static_camera_clip(tracker, pyfeat):
    """A talking clip from a still camera; the reference is a frame 2 s later."""
    video = read_video(pyfeat / "single_face.mp4")
    times = np.arange(FRAMES) / FPS
    picks = np.abs(video.times[None] - times[:, None]).argmin(axis=1)
    target, reference = video.frames[picks], video.frames[-1]
    sample = build_sample_conditioning(reference, target, settings=_settings(), tracker=tracker)
    assert sample.conditioning.mode == Mode.FRONTAL_DYNAMIC and not sample.camera_change
    infer = _equivalent_request(sample, reference, target, tracker, recorded=False)
    _assert_parity(sample.conditioning, infer)
    # frontal-dynamic: every frame is filmed by the reference camera: identity rays.
    identity = build_conditioning(
        reference, _clip(target), settings=_settings(), tracker=tracker
    ).rays
    np.testing.assert_array_equal(sample.conditioning.rays, identity)
    np.testing.assert_array_equal(sample.conditioning.rays[:, :3], 0.0)


def test_parity_recorded_moving_camera(tracker):
    """The reference photo from camera pose 0; the target filmed while the camera rolls from 4
    to 12 degrees (recorded). The rays start away from the identity: the camera had already
    rolled when the target began."""
    photo = read_image("assets/example_portrait.jpg")
    angles = np.linspace(4, 12, FRAMES)
    target = _warped(photo, angles, np.ones(FRAMES))[:, ::2, ::2].copy()
    reference = photo[::2, ::2].copy()
    sample = build_sample_conditioning(
        reference,
        target,
        settings=_settings(),
        tracker=tracker,
        cameras=_roll_cameras(angles),
        reference_camera=np.eye(4),
    )
    cond = sample.conditioning
    assert cond.mode == Mode.ALL_DYNAMIC and sample.camera_change
    relative = invert_rigid(cond.reference_c2w) @ cond.c2w
    rolled = np.degrees(Rotation.from_matrix(relative[:, :3, :3]).magnitude())
    np.testing.assert_allclose(rolled, angles, atol=1e-6)  # the recorded roll, from the reference
    infer = _equivalent_request(sample, reference, target, tracker, recorded=True)
    _assert_parity(cond, infer)


def test_parity_two_camera_group(tracker):
    """The reference from camera A; the target from camera B, rolled 20 degrees against A,
    with no cameras file: the head both saw at the reference's moment ties B to A."""
    photo = read_image("assets/example_portrait.jpg")
    rock = 6 * np.sin(np.arange(FRAMES) * np.pi / 8)  # the head rocks while B films it
    target = _warped(photo, 20 + rock, np.ones(FRAMES))[:, ::2, ::2].copy()
    moment = _warped(photo, [20.0], [1.0])[0, ::2, ::2].copy()  # B at the reference's moment
    reference = photo[::2, ::2].copy()
    sample = build_sample_conditioning(
        reference, target, settings=_settings(), tracker=tracker, moment_frame=moment
    )
    cond = sample.conditioning
    assert cond.mode == Mode.NOVEL_DYNAMIC and not sample.camera_change
    relative = invert_rigid(cond.reference_c2w) @ cond.c2w
    # B is A turned about its viewing axis by 20 degrees (tracking error: 2 degrees).
    turn = Rotation.from_matrix(relative[0, :3, :3])
    assert np.degrees(turn.magnitude()) == pytest.approx(20, abs=2)
    assert abs(turn.as_rotvec()[2]) > 0.9 * turn.magnitude()  # about the viewing axis (z)
    infer = _equivalent_request(sample, reference, target, tracker, recorded=True)
    _assert_parity(cond, infer)


def _camera_from_rays(rays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rotation, centre) of the camera that made one ray map (6,H,W), from the map alone:
    directions d ~ M p with M = R K^-1 (a homogeneous linear fit, then RQ), and the centre o
    from the moments m = o x d (linear least squares)."""
    _, height, width = rays.shape
    v, u = np.mgrid[0:height, 0:width] + 0.5
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    directions = rays[3:].reshape(3, -1).T.astype(np.float64)
    moments = rays[:3].reshape(3, -1).T.astype(np.float64)
    # d x (M p) = 0: three equations per pixel, linear in the 9 entries of M.
    rows = []
    for axis in range(3):
        a, b = (axis + 1) % 3, (axis + 2) % 3
        row = np.zeros((len(pixels), 9))
        row[:, 3 * b : 3 * b + 3] = directions[:, a : a + 1] * pixels
        row[:, 3 * a : 3 * a + 3] = -directions[:, b : b + 1] * pixels
        rows.append(row)
    M = np.linalg.svd(np.concatenate(rows))[2][-1].reshape(3, 3)
    if np.linalg.det(M) < 0:
        M = -M
    K, R_T = rq(np.linalg.inv(M))  # inv(M) = K R^T
    R = (np.diag(np.sign(np.diag(K))) @ R_T).T
    # m = o x d = -[d]x o
    skew = np.zeros((len(directions), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = -directions[:, 2], directions[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = directions[:, 2], -directions[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = -directions[:, 1], directions[:, 0]
    centre = np.linalg.lstsq(-skew.reshape(-1, 3), moments.reshape(-1), rcond=None)[0]
    return R, centre


@pytest.mark.parametrize(("azimuth", "elevation"), [(30.0, 10.0), (-45.0, 0.0), (0.0, -20.0)])
def test_the_novel_view_is_recovered_from_the_rays(tracker, pyfeat, azimuth, elevation):
    """The camera recovered from a novel-dynamic ray map (without K or c2w) is the requested
    view within 0.5 degrees; frontal-dynamic's is the identity."""
    portrait = pyfeat / "single_face.jpg"
    driving = pyfeat / "single_face.mp4"
    base = dict(frames=5, height=SIZE, width=SIZE)
    novel = build_conditioning(
        portrait,
        driving,
        tracker=tracker,
        settings=ConditioningSettings(
            mode="novel-dynamic", novel_azimuth=azimuth, novel_elevation=elevation, **base
        ),
    )
    R, centre = _camera_from_rays(novel.rays[0])
    # The requested view: the portrait's own (azimuth, elevation, distance, roll) around the
    # head, turned by the offsets, as a motion applied to the portrait camera.
    own = view_of_camera(novel.reference_c2w)
    start = orbit_c2w(own.azimuth, own.elevation, own.distance, own.roll)
    moved = orbit_c2w(own.azimuth + azimuth, own.elevation + elevation, own.distance, own.roll)
    expected = (
        invert_rigid(novel.reference_c2w) @ moved @ invert_rigid(start) @ (novel.reference_c2w)
    )
    error = Rotation.from_matrix(R.T @ expected[:3, :3]).magnitude()
    assert np.degrees(error) < 0.5
    distance = np.linalg.norm(novel.reference_c2w[:3, 3])
    np.testing.assert_allclose(centre, expected[:3, 3] / distance, atol=0.01)

    frontal = build_conditioning(
        portrait,
        driving,
        tracker=tracker,
        settings=ConditioningSettings(mode="frontal-dynamic", **base),
    )
    R, centre = _camera_from_rays(frontal.rays[0])
    assert np.degrees(Rotation.from_matrix(R).magnitude()) < 0.5
    np.testing.assert_allclose(centre, 0.0, atol=1e-6)


def test_a_face_growing_in_the_driving_clip_moves_the_head_towards_the_camera(tracker):
    """The driving clip: the real portrait resized about the face, 1x to 1.25x. In our camera
    model a face 1.25x larger is 1/1.25 as far: the portrait's head comes from its distance z
    to z / 1.25 (within 5%), and neither turns nor crosses the picture."""
    photo = read_image("assets/example_portrait.jpg")
    scales = np.linspace(1.0, 1.25, FRAMES)
    driving = _warped(photo, np.zeros(FRAMES), scales)
    cond = build_conditioning(
        photo, _clip(driving), settings=_settings(smoothing=False), tracker=tracker
    )
    in_camera = invert_rigid(cond.reference_c2w) @ cond.head_pose  # head -> portrait camera
    depth = in_camera[:, 2, 3]
    np.testing.assert_allclose(depth / depth[0], 1 / scales, rtol=0.05)
    moved_cm = depth[0] - depth[-1]
    assert moved_cm == pytest.approx(depth[0] * (1 - 1 / 1.25), rel=0.05)
    turned = np.degrees(Rotation.from_matrix(cond.head_pose[:, :3, :3]).magnitude())
    assert turned.max() < 2.0
