"""Wan-Animate's two driving videos from our core, against known answers.

Skeleton: the face keypoints sit where the posed template's face vertices land; the neck and
shoulders move exactly as the cameras project fixed world points (recomputed here from K and
c2w), and not with the head; the drawing uses Wan-Animate's palette (RGB), limb shade and
stick width (values transcribed from its preprocessing's drawing code, see skeleton.py).
Face crops: the box rule of Wan-Animate's preprocessing (1.3x the area of the face box, same
aspect, extra height 3:1 above:below), and crops equal to a direct cv2 crop and resize.
"""

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.engines.wan_animate import face_video, pose_video
from factorportrait.engines.wan_animate.faces import IBUG68_FROM_MEDIAPIPE, face_crop_boxes
from factorportrait.engines.wan_animate.skeleton import (
    WORLD_SHOULDERS,
    draw_skeleton,
    skeleton_keypoints,
    stick_width,
)
from factorportrait.viewpoint import load_preset

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SIZE = 128
FRAMES = 9
FPS = 8.0
# OpenPose slots (Wan-Animate's body order) and their colours in its palette, RGB.
NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE, R_EAR, L_EAR = 0, 1, 2, 5, 14, 15, 16, 17
PALETTE = {
    NOSE: (255, 0, 0),
    NECK: (255, 85, 0),
    R_SHOULDER: (255, 170, 0),
    L_SHOULDER: (85, 255, 0),
    R_EYE: (170, 0, 255),
    L_EYE: (255, 0, 255),
    R_EAR: (255, 0, 170),
    L_EAR: (255, 0, 85),
}
NOSE_TO_NECK_LIMB = (0, 0, int(255 * 0.6))  # limb 13 of 19: blue, at 60%
# Template face vertices (MediaPipe canonical order) for each face keypoint.
FACE_VERTICES = {NOSE: [4], R_EYE: [33, 133], L_EYE: [362, 263], R_EAR: [234], L_EAR: [454]}


def _build(tracker, mode, driving=None, trajectory=None):
    settings = ConditioningSettings(mode=mode, frames=FRAMES, height=SIZE, width=SIZE, fps=FPS)
    return build_conditioning(
        ASSETS / "example_portrait.jpg",
        driving,
        tracker=tracker,
        settings=settings,
        trajectory=trajectory,
    )


@pytest.fixture(scope="module")
def driven(tracker):
    return _build(tracker, "frontal-dynamic", ASSETS / "example_driving.mp4")


@pytest.fixture(scope="module")
def orbit(tracker):
    return _build(tracker, "camera-only", trajectory=load_preset("orbit"))


def _project(points, K, c2w):
    """World points (P,3) through each camera: (F, P, 2), written out here with K and c2w."""
    out = []
    for intrinsics, camera_to_world in zip(K, c2w, strict=True):
        rotation, centre = camera_to_world[:3, :3], camera_to_world[:3, 3]
        in_camera = (points - centre) @ rotation  # R^T (X - C)
        pixels = in_camera @ intrinsics.T
        out.append(pixels[:, :2] / pixels[:, 2:])
    return np.array(out)


def test_face_keypoints_follow_the_posed_template_in_every_frame(driven):
    keypoints = skeleton_keypoints(driven)
    assert keypoints.shape == (FRAMES, 20, 2)
    for slot, vertices in FACE_VERTICES.items():
        expected = driven.face_pixels[:, vertices].mean(axis=1)
        np.testing.assert_allclose(keypoints[:, slot], expected, atol=1e-6)
    # the head moves over the clip, so the face keypoints must too
    assert np.ptp(keypoints[:, NOSE], axis=0).max() > 1.0
    # keypoints the template has no counterpart for (arms, legs, toes) are absent
    absent = [i for i in range(20) if i not in (*PALETTE,)]
    assert np.isnan(keypoints[:, absent]).all()
    assert np.isfinite(keypoints[:, list(PALETTE)]).all()


def test_frame_zero_sits_on_the_portraits_own_face(driven, orbit):
    for cond in (driven, orbit):
        nose = skeleton_keypoints(cond)[0, NOSE]
        # the tracked nose tip in the portrait; the template is fitted to these landmarks
        assert np.linalg.norm(nose - cond.source_landmarks[4, :2]) < 0.03 * SIZE


def test_still_camera_keeps_shoulders_while_the_head_moves(driven):
    keypoints = skeleton_keypoints(driven)
    assert np.ptp(driven.head_pose[:, :3, 3], axis=0).max() > 0.1  # the head does move
    for slot in (NECK, R_SHOULDER, L_SHOULDER):
        np.testing.assert_allclose(
            keypoints[:, slot], np.broadcast_to(keypoints[0, slot], (FRAMES, 2)), atol=1e-6
        )


def test_orbit_keeps_the_body_still_and_turns_the_head(orbit):
    """The public model films with a still camera: under an orbit the neck and shoulders stay
    where the portrait's own camera sees the template's body (frame 0 is that camera), and the
    camera's turn about the head reaches the skeleton as the head turning."""
    keypoints = skeleton_keypoints(orbit)
    world = np.array([WORLD_SHOULDERS[R_SHOULDER], WORLD_SHOULDERS[L_SHOULDER]], float)
    still = _project(world, orbit.K[:1], orbit.reference_c2w[None])[0]
    for slot, expected in ((R_SHOULDER, still[0]), (L_SHOULDER, still[1])):
        np.testing.assert_allclose(keypoints[:, slot], np.broadcast_to(expected, (FRAMES, 2)))
    # the neck is the midpoint of the two shoulders IN THE IMAGE, as Wan-Animate derives it
    # from a whole-body detector's 2D shoulders (not the projected 3D midpoint)
    np.testing.assert_allclose(keypoints[:, NECK], np.broadcast_to(still.mean(axis=0), (FRAMES, 2)))
    nose_offset = keypoints[:, NOSE, 0] - keypoints[:, NECK, 0]
    assert np.ptp(nose_offset) > 5.0  # the orbit turns the head over the still body
    # the person's right shoulder is on the image's left
    assert keypoints[0, R_SHOULDER, 0] < keypoints[0, L_SHOULDER, 0]
    assert keypoints[0, R_EYE, 0] < keypoints[0, L_EYE, 0]


def _yawed(cond, degrees):
    """``cond`` with the head turned ``degrees`` about its vertical axis in every frame."""
    t = np.radians(degrees)
    turn = np.eye(4)
    turn[0, 0], turn[0, 2], turn[2, 0], turn[2, 2] = np.cos(t), np.sin(t), -np.sin(t), np.cos(t)
    return dataclasses.replace(cond, head_pose=np.broadcast_to(turn, cond.head_pose.shape).copy())


def _colour_drawn(video, colour):
    return (video == np.array(colour, np.uint8)).all(axis=-1).any(axis=(1, 2))


@pytest.mark.parametrize("degrees", [60, -60])
def test_at_a_head_yaw_of_60_degrees_the_drawn_skeleton_has_one_ear(driven, degrees):
    """A pose estimator does not report the ear the head hides: at 60 degrees only the near
    ear is drawn (at 0 both are)."""
    turned = _yawed(driven, degrees)
    keypoints = skeleton_keypoints(turned)
    ears = np.isfinite(keypoints[:, [R_EAR, L_EAR], 0])
    # the face turned towards +x (the image's right, the person's left) takes the left ear
    # behind the head
    near = R_EAR if degrees > 0 else L_EAR
    assert ears.sum(axis=1).tolist() == [1] * FRAMES
    assert np.isfinite(keypoints[:, near]).all()
    video = pose_video(turned)
    drawn = {ear: _colour_drawn(video, PALETTE[ear]) for ear in (R_EAR, L_EAR)}
    assert drawn[near].all() and not drawn[R_EAR + L_EAR - near].any()
    # both eyes and the nose are still seen at 60 degrees; at 0 both ears are
    assert np.isfinite(keypoints[:, [NOSE, R_EYE, L_EYE]]).all()
    frontal = pose_video(_yawed(driven, 0))
    assert all(_colour_drawn(frontal, PALETTE[ear]).all() for ear in (R_EAR, L_EAR))


def test_keypoints_outside_the_frame_are_left_out(driven):
    # the same head and body seen through a camera that has them half out of the picture
    moved = dataclasses.replace(driven, reference_c2w=driven.reference_c2w.copy())
    moved.reference_c2w[0, 3] += 12.0  # the camera 12 cm to the right: the body shifts left
    moved.c2w = np.broadcast_to(moved.reference_c2w, driven.c2w.shape).copy()
    keypoints = skeleton_keypoints(moved)
    assert np.isnan(keypoints[:, R_SHOULDER]).all()  # off the left edge
    assert np.isnan(keypoints[:, NECK]).all()  # no neck without both shoulders
    assert np.isfinite(keypoints[:, L_SHOULDER]).all()


@pytest.mark.parametrize("mode", ["frontal-dynamic", "novel-dynamic", "camera-only", "all-dynamic"])
def test_at_the_default_framing_both_shoulders_lie_inside_the_frame_in_every_mode(tracker, mode):
    """The bundled example as wan-animate makes the request (its frame rate and its framing),
    in each mode with its default camera (the novel view 30 degrees aside, the orbit): both
    shoulders and the neck are in every frame of the pose video, well above the bottom edge
    (Wan's preprocessing frames head and shoulders; the project's tight crop put them at
    93-98% of the height)."""
    from factorportrait.engines.wan_animate.windows import wan_animate_request

    settings, _ = wan_animate_request(
        ConditioningSettings(mode=mode, frames=FRAMES, height=SIZE, width=SIZE)
    )
    driving = None if mode == "camera-only" else ASSETS / "example_expressive.mp4"
    cond = build_conditioning(
        ASSETS / "example_portrait.jpg", driving, tracker=tracker, settings=settings
    )
    keypoints = skeleton_keypoints(cond)
    body = keypoints[:, [R_SHOULDER, L_SHOULDER, NECK]]
    assert np.isfinite(body).all()
    assert (body >= 0).all() and (body[..., 0] < SIZE).all() and (body[..., 1] < SIZE).all()
    assert body[..., 1].max() < 0.88 * SIZE, body[..., 1].max() / SIZE
    video = pose_video(cond)
    for slot in (R_SHOULDER, L_SHOULDER):
        assert _colour_drawn(video, PALETTE[slot]).all()


def test_pose_video_draws_wan_colours_at_the_keypoints(driven):
    video = pose_video(driven)
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
    keypoints = skeleton_keypoints(driven)
    for frame, points in zip(video, keypoints, strict=True):
        for slot, colour in PALETTE.items():
            x, y = points[slot].astype(int)
            if 0 <= x < SIZE and 0 <= y < SIZE:
                np.testing.assert_array_equal(frame[y, x], colour)
        middle = ((points[NOSE] + points[NECK]) / 2).astype(int)
        np.testing.assert_array_equal(frame[middle[1], middle[0]], NOSE_TO_NECK_LIMB)


def test_stick_width_and_radius_follow_wan_scaling():
    # max(int(min(H, W) / 200) - 1, 1)
    assert [stick_width(h, w) for h, w in [(128, 128), (512, 512), (720, 1280), (1000, 1000)]] == [
        1,
        1,
        2,
        4,
    ]
    points = np.full((20, 2), np.nan)
    points[NOSE] = (500, 500)
    canvas = draw_skeleton(points, 1000, 1000)
    np.testing.assert_array_equal(canvas[500, 504], PALETTE[NOSE])  # radius 4: inside
    assert not canvas[500, 506].any() and not canvas[506, 500].any()
    assert canvas.sum(axis=2).astype(bool).sum() < 100  # one small disc, nothing else


def _wan_box(face_points, scale, height, width):
    """The face box rule of Wan-Animate's preprocessing (utils.get_face_bboxes), written out."""
    min_x, min_y = face_points.min(axis=0)
    max_x, max_y = face_points.max(axis=0)
    w0, h0 = max_x - min_x, max_y - min_y
    area = w0 * h0 * scale
    new_w, new_h = np.sqrt(area * w0 / h0), np.sqrt(area * h0 / w0)
    dw, dh = (new_w - w0) / 2, (new_h - h0) / 4
    return [
        int(max(min_x - dw, 0)),
        int(max(min_y - 3 * dh, 0)),
        int(min(max_x + dw, width)),
        int(min(max_y + dh, height)),
    ]


def test_face_box_is_wan_enlargement_of_the_face_box():
    landmarks = np.full((2, 478, 3), 150.0)
    face = list(IBUG68_FROM_MEDIAPIPE)
    rng = np.random.default_rng(0)
    landmarks[0, face, :2] = rng.uniform((100, 50), (200, 250), (len(face), 2))
    landmarks[0, face[:2], :2] = [(100, 50), (200, 250)]  # the face box: 100 wide, 200 tall
    landmarks[1, face, :2] = landmarks[0, face, :2] - (95, 0)  # near the left edge: clipped
    boxes = face_crop_boxes(landmarks, (300, 400))
    grow = np.sqrt(1.3) - 1  # same aspect, 1.3x the area
    np.testing.assert_array_equal(
        boxes[0], np.trunc([100 - 50 * grow, 50 - 150 * grow, 200 + 50 * grow, 250 + 50 * grow])
    )
    assert boxes[1][0] == 0
    for box, points in zip(boxes, landmarks[:, face, :2], strict=True):
        assert list(box) == _wan_box(points, 1.3, 300, 400)


def test_face_video_crops_the_tracked_driving_face(driven):
    crops = face_video(driven, size=64)
    assert crops.shape == (FRAMES, 64, 64, 3) and crops.dtype == np.uint8
    frames, landmarks = driven.driving_frames, driven.driving_landmarks
    boxes = face_crop_boxes(landmarks, frames.shape[1:3])
    for i in (0, FRAMES // 2, FRAMES - 1):
        face = landmarks[i, list(IBUG68_FROM_MEDIAPIPE), :2]
        assert list(boxes[i]) == _wan_box(face, 1.3, *frames.shape[1:3])
        # centred across the tracked face box, and the eyes, nose and mouth inside
        assert abs((boxes[i, 0] + boxes[i, 2]) / 2 - (face[:, 0].min() + face[:, 0].max()) / 2) <= 1
        x1, y1, x2, y2 = boxes[i]
        assert ((face >= (x1, y1)) & (face <= (x2, y2))).all()
        expected = cv2.resize(frames[i][y1:y2, x1:x2], (64, 64))
        np.testing.assert_array_equal(crops[i], expected)
    # the expression changes over the clip, so the crops do
    assert np.abs(crops[0].astype(int) - crops[-1].astype(int)).mean() > 1.0


def test_camera_only_face_video_is_the_portrait_repeated(orbit):
    assert orbit.driving_frames is None
    crops = face_video(orbit, size=64)
    assert crops.shape == (FRAMES, 64, 64, 3)
    face = orbit.source_landmarks[list(IBUG68_FROM_MEDIAPIPE), :2]
    x1, y1, x2, y2 = _wan_box(face, 1.3, SIZE, SIZE)
    expected = cv2.resize(orbit.reference[y1:y2, x1:x2], (64, 64))
    for crop in crops:
        np.testing.assert_array_equal(crop, expected)
