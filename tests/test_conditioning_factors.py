"""The factorised core against known answers: what each mode takes from the driving clip, the
novel view, the pose settings, large portraits, the face crops and the several-faces note.

The references are computed here, independently of the core: the driving clip is tracked by
the test itself (MediaPipe is deterministic for the same frames and times), the portrait's own
face likewise, and the expected poses follow from those rotations by hand.
"""

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.conditioning.framing import clip_framing
from factorportrait.expression import aligned_crops, head_frame_landmarks
from factorportrait.io.media import VideoFrames, read_image, read_video
from factorportrait.tracking import assemble_clip, smooth_clip
from factorportrait.viewpoint import load_preset

SIZE = 64
FPS = 4.0
FRAMES = 9
# Where the expression crops put the eye centres and the mouth centre (expression.py's promise,
# FFHQ-style alignment), as fractions of the crop.
RIGHT_EYE, LEFT_EYE, MOUTH = (0.355, 0.42), (0.645, 0.42), (0.5, 0.74)


def _settings(mode, **overrides):
    values = {"height": SIZE, "width": SIZE, "fps": FPS, "frames": FRAMES, **overrides}
    return ConditioningSettings(mode=mode, **values)


@pytest.fixture(scope="module")
def driving(pyfeat):
    """A real clip whose head turns and whose expression changes in its first two seconds."""
    return read_video(pyfeat / "WolfgangLanger_Pexels.mp4", max_side=480, until_s=2.5)


@pytest.fixture(scope="module")
def driving_tracked(tracker, driving):
    """The driving clip tracked by the test: the frame shown at each output time i / fps (the
    nearest decoded one), tracked in video mode at its real time."""
    times = np.arange(FRAMES) / FPS
    picks = np.abs(driving.times[None, :] - times[:, None]).argmin(axis=1)
    frames = driving.frames[picks]
    observations = tracker.track_frames(frames, driving.times[picks])
    assert all(o is not None for o in observations)
    return {
        "frames": frames,
        "observations": observations,
        "times": times,
        "blendshapes": np.stack([o.blendshapes for o in observations]),
        "landmarks": np.stack([o.landmarks for o in observations]),
        "rotations": np.stack([o.head_to_camera[:3, :3] for o in observations]),
        "translations": np.stack([o.head_to_camera[:3, 3] for o in observations]),
    }


@pytest.fixture(scope="module")
def portrait_face(tracker, pyfeat):
    return tracker.track_image(read_image(pyfeat / "single_face.jpg"))


def _build(tracker, pyfeat, driving, mode, trajectory=None, portrait="single_face.jpg", **kw):
    return build_conditioning(
        pyfeat / portrait,
        driving,
        tracker=tracker,
        trajectory=trajectory,
        settings=_settings(mode, **kw),
    )


def _camera_rotation(cond):
    """World -> portrait camera rotation (the camera is static in frontal-dynamic)."""
    np.testing.assert_allclose(cond.c2w, np.broadcast_to(cond.c2w[0], cond.c2w.shape))
    return cond.c2w[0, :3, :3].T


def _angle_deg(rotations):
    return np.degrees(Rotation.from_matrix(rotations).magnitude())


# ------------------------------------------------------------------ what each mode takes


def test_all_dynamic_expressions_are_the_driving_clips_per_frame(
    tracker, pyfeat, driving, driving_tracked, portrait_face
):
    cond = _build(tracker, pyfeat, driving, "all-dynamic", load_preset("orbit"), smoothing=False)
    raw = driving_tracked
    # The clip's expression really changes and is not the portrait's: the test can tell apart
    # "driven" from "frozen".
    assert np.ptp(raw["blendshapes"], axis=0).max() > 0.3
    assert np.abs(raw["blendshapes"] - portrait_face.blendshapes).max(axis=1).min() > 0.3
    # Every frame's expression is that frame's: blendshapes, landmarks and crops.
    np.testing.assert_allclose(cond.blendshapes, raw["blendshapes"], atol=1e-9)
    np.testing.assert_allclose(cond.driving_landmarks, raw["landmarks"], atol=1e-9)
    np.testing.assert_array_equal(cond.driving_frames, raw["frames"])
    np.testing.assert_array_equal(cond.crops, aligned_crops(raw["frames"], raw["landmarks"]))
    # The landmark code (ablation C3) too: each frame's landmarks in its own crop.
    np.testing.assert_allclose(
        cond.crop_landmarks, head_frame_landmarks(raw["landmarks"]), atol=1e-9
    )
    # ... and the crops differ from frame to frame (a frozen crop would repeat).
    assert min(np.abs(np.diff(cond.crops.astype(int), axis=0)).mean(axis=(1, 2, 3))) > 1
    # The head is driven too: frame f is turned from frame 0 by the driving motion.
    motion = raw["rotations"] @ raw["rotations"][0].T
    expected = _angle_deg(motion)
    assert expected.max() > 5
    np.testing.assert_allclose(_angle_deg(cond.head_pose[:, :3, :3]), expected, atol=1e-6)


def test_camera_only_ignores_a_given_driving_clip(tracker, pyfeat, driving, portrait_face):
    sweep = load_preset("sweep")
    given = _build(tracker, pyfeat, driving, "camera-only", sweep)
    alone = _build(tracker, pyfeat, None, "camera-only", sweep)
    # The portrait's own pose (the identity: world = the portrait's head frame), every frame.
    np.testing.assert_array_equal(given.head_pose, np.broadcast_to(np.eye(4), (FRAMES, 4, 4)))
    # The portrait's own expression, every frame, tracked here from the photo.
    np.testing.assert_allclose(
        given.blendshapes, np.broadcast_to(portrait_face.blendshapes, (FRAMES, 52)), atol=1e-9
    )
    # Everything the model sees is what it sees without the clip.
    for name in ("head_pose", "blendshapes", "crops", "crop_landmarks", "normals", "c2w", "rays"):
        np.testing.assert_array_equal(getattr(given, name), getattr(alone, name), err_msg=name)
    assert given.driving_frames is None and given.driving_landmarks is None


# ------------------------------------------------------------------ novel-dynamic's view


def _elevation_distance(c2w):
    """Elevation (degrees) and distance of a camera centre around the head centre (the world
    origin; y up)."""
    centre = c2w[:3, 3]
    distance = np.linalg.norm(centre)
    return np.degrees(np.arcsin(centre[1] / distance)), distance, centre


@pytest.mark.parametrize(
    ("azimuth", "elevation", "distance"), [(0.0, 20.0, 1.5), (-30.0, -12.0, 0.8)]
)
def test_novel_view_elevation_and_distance(tracker, pyfeat, driving, azimuth, elevation, distance):
    kw = {"frames": 5}
    novel = _build(
        tracker,
        pyfeat,
        driving,
        "novel-dynamic",
        novel_azimuth=azimuth,
        novel_elevation=elevation,
        novel_distance=distance,
        **kw,
    )
    frontal = _build(tracker, pyfeat, driving, "frontal-dynamic", **kw)
    np.testing.assert_allclose(novel.c2w, np.broadcast_to(novel.c2w[0], novel.c2w.shape))
    el0, d0, c0 = _elevation_distance(frontal.c2w[0])
    el1, d1, c1 = _elevation_distance(novel.c2w[0])
    assert el1 - el0 == pytest.approx(elevation, abs=1e-6)
    assert d1 / d0 == pytest.approx(distance, rel=1e-9)
    # Azimuth (about the vertical through the head centre) moved by exactly what was asked.
    turned = np.degrees(np.arctan2(c1[0], c1[2]) - np.arctan2(c0[0], c0[2]))
    assert turned == pytest.approx(azimuth, abs=1e-6)
    # The camera still faces the head: the head centre projects inside the frame.
    w2c = np.linalg.inv(novel.c2w[0])
    centre = novel.K[0] @ w2c[:3, 3]
    assert centre[2] > 0 and ((centre[:2] / centre[2] > 0) & (centre[:2] / centre[2] < SIZE)).all()
    np.testing.assert_allclose(novel.head_pose, frontal.head_pose)  # the same driven head


# ------------------------------------------------------------------ pose settings


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_pose_strength_scales_the_driving_motion(
    tracker, pyfeat, driving, driving_tracked, strength
):
    cond = _build(
        tracker, pyfeat, driving, "frontal-dynamic", smoothing=False, pose_strength=strength
    )
    R = driving_tracked["rotations"]
    motion = Rotation.from_matrix(R @ R[0].T)  # the driving motion since frame 0, camera frame
    assert _angle_deg(motion.as_matrix()).max() > 5
    expected = Rotation.from_rotvec(motion.as_rotvec() * strength).as_matrix()
    rc = _camera_rotation(cond)
    # The head's motion seen from the portrait camera is the scaled driving motion.
    seen = rc @ cond.head_pose[:, :3, :3] @ rc.T
    np.testing.assert_allclose(seen, expected, atol=1e-6)
    np.testing.assert_allclose(
        _angle_deg(cond.head_pose[:, :3, :3]), strength * _angle_deg(motion.as_matrix()), atol=1e-6
    )
    # Translation, in our camera model: against the full-strength head, half strength moves
    # the face across the picture by half as many pixels and changes its scale (depth) by the
    # square root of the full change.
    full = _build(tracker, pyfeat, driving, "frontal-dynamic", smoothing=False)
    seen_full, seen_scaled = (
        np.linalg.inv(c.c2w[0]) @ c.head_pose for c in (full, cond)
    )  # head -> portrait camera
    depth_full, depth = seen_full[:, 2, 3], seen_scaled[:, 2, 3]
    assert np.ptp(depth_full) > 0.1  # the clip's head does move in depth
    np.testing.assert_allclose(
        depth / depth[0], (depth_full / depth_full[0]) ** strength, rtol=1e-9
    )
    pixels_full = seen_full[:, :2, 3] / seen_full[:, 2:3, 3] * full.K[0, 0, 0]
    pixels = seen_scaled[:, :2, 3] / seen_scaled[:, 2:3, 3] * cond.K[0, 0, 0]
    np.testing.assert_allclose(
        pixels - pixels[0], strength * (pixels_full - pixels_full[0]), atol=1e-6
    )
    if strength == 0:
        np.testing.assert_allclose(
            cond.head_pose, np.broadcast_to(np.eye(4), cond.head_pose.shape), atol=1e-12
        )


def test_absolute_pose_copies_the_driving_orientation(tracker, pyfeat, driving, driving_tracked):
    cond = _build(tracker, pyfeat, driving, "frontal-dynamic", smoothing=False, relative_pose=False)
    rc = _camera_rotation(cond)
    R = driving_tracked["rotations"]
    # Head -> portrait camera equals the driving head -> driving camera, frame by frame.
    np.testing.assert_allclose(rc @ cond.head_pose[:, :3, :3], R, atol=1e-6)
    # ... and sits where the driving head sits in the driving clip framed like a portrait:
    # the posed template's face lands on the driving landmarks seen through that framing.
    framing = clip_framing(cond.driving_landmarks[0], SIZE, SIZE)
    framed = cond.driving_landmarks[:, :468, :2] * framing[0, 0] + framing[:, 2]
    error = np.linalg.norm(cond.face_pixels - framed, axis=-1).mean(axis=1)
    face_size = np.ptp(framed[0, :, 0])
    assert error.max() < 0.05 * face_size, (error.max(), face_size)
    # Not the same as relative: the driving head's first pose is not the portrait's.
    assert _angle_deg((rc.T @ R[0])[None])[0] > 3


def test_smoothing_changes_the_raw_values_and_off_keeps_them(
    tracker, pyfeat, driving, driving_tracked
):
    raw = driving_tracked
    smoothed = _build(tracker, pyfeat, driving, "frontal-dynamic")
    plain = _build(tracker, pyfeat, driving, "frontal-dynamic", smoothing=False)
    # Off: the raw per-frame values, and no change in jitter.
    np.testing.assert_allclose(plain.blendshapes, raw["blendshapes"], atol=1e-9)
    np.testing.assert_allclose(plain.driving_landmarks, raw["landmarks"], atol=1e-9)
    assert plain.report.clip.jitter_px == plain.report.clip.jitter_px_raw
    # On: what the zero-lag filter makes of the same raw clip (the filter has its own tests),
    # which is measurably different from the raw values.
    reference = smooth_clip(assemble_clip(raw["observations"], raw["times"]))
    np.testing.assert_allclose(smoothed.blendshapes, reference.blendshapes, atol=1e-9)
    np.testing.assert_allclose(smoothed.driving_landmarks, reference.landmarks, atol=1e-9)
    assert np.abs(smoothed.driving_landmarks - raw["landmarks"])[..., :2].max() > 0.5
    assert np.abs(smoothed.blendshapes - raw["blendshapes"]).max() > 0.01
    assert smoothed.report.clip.jitter_px < smoothed.report.clip.jitter_px_raw
    rc = _camera_rotation(smoothed)
    R = reference.rotations
    np.testing.assert_allclose(rc @ smoothed.head_pose[:, :3, :3] @ rc.T, R @ R[0].T, atol=1e-6)


# ------------------------------------------------------------------ large portraits


def test_portraits_over_2048_px_are_tracked_on_a_downscaled_copy(
    tracker, pyfeat, tmp_path, monkeypatch
):
    factor = 4  # 572 x 562 -> 2288 x 2248: over the 2048 px tracking limit
    image = read_image(pyfeat / "single_face.jpg")
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    assert max(big.shape[:2]) > 2048
    path = tmp_path / "big.png"
    cv2.imwrite(str(path), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    small = _build(tracker, pyfeat, None, "camera-only", frames=1)

    seen = []
    original = tracker.track_image

    def spy(rgb):
        seen.append(rgb.shape)
        return original(rgb)

    monkeypatch.setattr(tracker, "track_image", spy)
    large = build_conditioning(
        path, None, tracker=tracker, settings=_settings("camera-only", frames=1)
    )
    assert seen and max(seen[0][:2]) <= 2048  # what the detector was given
    # The face found on the copy is placed back in the full photo: the reference is cut from
    # the same region (4x the pixels per output pixel) and the face lands at the same place.
    crop_small, crop_large = (
        np.array(small.report.reference_crop),
        np.array(large.report.reference_crop),
    )
    np.testing.assert_allclose(crop_large[:, :2] * factor, crop_small[:, :2], rtol=0.02)
    np.testing.assert_allclose(crop_large[:, 2], crop_small[:, 2], atol=0.02 * SIZE)
    face_size = np.ptp(small.source_landmarks[:, 0])
    error = np.linalg.norm(large.source_landmarks[:, :2] - small.source_landmarks[:, :2], axis=1)
    assert np.median(error) < 0.02 * face_size
    assert np.abs(large.reference.astype(int) - small.reference.astype(int)).mean() < 8


# ------------------------------------------------------------------ face crops


def _eyes_and_mouth(landmarks):
    return np.stack(
        [
            landmarks[[33, 133], :2].mean(0),
            landmarks[[362, 263], :2].mean(0),
            landmarks[[61, 291], :2].mean(0),
        ]
    )


def test_crop_of_a_known_image_is_the_expected_region(pyfeat):
    image = read_image(pyfeat / "multi_face.jpg")
    size, x0, y0 = 224, 300, 150
    landmarks = np.zeros((478, 3))
    for indices, point in (((33, 133), RIGHT_EYE), ((362, 263), LEFT_EYE), ((61, 291), MOUTH)):
        landmarks[list(indices), :2] = np.array(point) * size + (x0, y0)
    crop = aligned_crops(image[None], landmarks[None], size)[0]
    region = image[y0 : y0 + size, x0 : x0 + size].astype(int)
    assert np.abs(crop.astype(int) - region).max() <= 1
    # The same face turned a quarter turn in the photo gives the same (upright) crop.
    turned = np.ascontiguousarray(np.rot90(image))  # (x, y) -> (y, W - 1 - x)
    moved = landmarks.copy()
    moved[:, 0], moved[:, 1] = landmarks[:, 1], image.shape[1] - 1 - landmarks[:, 0]
    crop_turned = aligned_crops(turned[None], moved[None], size)[0]
    assert np.abs(crop_turned.astype(int) - region).max() <= 1


def test_face_crops_are_centred_on_the_face(tracker, pyfeat, driving):
    """Re-tracked, the crops the core makes show the face at the alignment's places."""
    for mode, clip in (("camera-only", None), ("all-dynamic", driving)):
        cond = _build(tracker, pyfeat, clip, mode, load_preset("orbit"), frames=5)
        size = cond.crops.shape[1]
        expected = np.array([RIGHT_EYE, LEFT_EYE, MOUTH]) * size
        for crop in cond.crops[[0, -1]]:
            face = tracker.track_image(crop)
            assert face is not None and face.faces_found == 1, mode
            error = np.linalg.norm(_eyes_and_mouth(face.landmarks) - expected, axis=1)
            # Within 9 px: a real face's eyes and mouth cannot all sit exactly on the template's
            # three places (the least-squares fit leaves a few pixels) and re-tracking adds a few.
            assert error.max() < 0.04 * size, (mode, error)
            # Scale and roll as promised: the best similarity from the re-tracked points to
            # the alignment's places is (nearly) the identity.
            scale, angle = _similarity(_eyes_and_mouth(face.landmarks), expected)
            assert scale == pytest.approx(1.0, abs=0.05) and abs(angle) < 3, (mode, scale, angle)


def _similarity(source, target):
    """Least-squares similarity source -> target in the complex plane: (scale, angle deg)."""
    z, w = source @ [1, 1j], target @ [1, 1j]
    z, w = z - z.mean(), w - w.mean()
    a = (w * z.conj()).sum() / (abs(z) ** 2).sum()
    return abs(a), np.degrees(np.angle(a))


# ------------------------------------------------------------------ several faces


def test_several_faces_in_the_portrait_use_the_largest_and_say_so(tracker, pyfeat):
    image = read_image(pyfeat / "multi_face.jpg")
    faces = tracker.track_faces(image)
    assert len(faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    largest, other = faces[int(np.argmax(areas))], faces[int(np.argmin(areas))]
    cond = _build(tracker, pyfeat, None, "camera-only", portrait="multi_face.jpg", frames=1)
    assert cond.report.portrait_faces_found == 2
    assert "2 faces in the portrait: using the largest" in cond.report.warnings
    # The face the reference was framed on, mapped back into the photo, is the largest one.
    matrix = np.array(cond.report.reference_crop)
    in_photo = (cond.source_landmarks[:, :2] - matrix[:, 2]) / matrix[0, 0]
    assert np.abs(in_photo - largest.landmarks[:, :2]).max() < 1e-6
    assert np.linalg.norm(in_photo - other.landmarks[:, :2], axis=1).min() > 50


def test_several_faces_in_the_driving_clip_follow_the_largest_and_say_so(tracker, pyfeat):
    image = read_image(pyfeat / "multi_face.jpg")
    faces = tracker.track_faces(image)
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    largest = faces[int(np.argmax(areas))]
    clip = VideoFrames(
        frames=np.repeat(image[None], 5, axis=0),
        times=np.arange(5) / FPS,
        declared_fps=FPS,
        source_size=(image.shape[1], image.shape[0]),
        rotation=0,
        has_audio=False,
    )
    cond = _build(tracker, pyfeat, clip, "frontal-dynamic", frames=5, smoothing=False)
    assert "several faces in the driving video: following the largest" in cond.report.warnings
    box_width = largest.box[2] - largest.box[0]
    error = np.linalg.norm(cond.driving_landmarks[:, :, :2] - largest.landmarks[:, :2], axis=2)
    assert error.mean(axis=1).max() < 0.05 * box_width
