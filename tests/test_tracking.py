"""MediaPipe tracking on real media: faces found, lost, several; the landmarker bundle."""

import urllib.request
from pathlib import Path

import numpy as np
import pytest

from factorportrait.config import FACE_LANDMARKER
from factorportrait.errors import InputError
from factorportrait.io import sha256_file
from factorportrait.io.media import read_image, read_video
from factorportrait.tracking import (
    NUM_BLENDSHAPES,
    NUM_LANDMARKS,
    FaceTracker,
    ModelFileError,
    assemble_clip,
    model_file,
    resolve_face_landmarker,
)


def test_real_photo(tracker, pyfeat):
    image = read_image(pyfeat / "single_face.jpg")
    face = tracker.track_image(image)
    assert face is not None and face.faces_found == 1
    assert face.landmarks.shape == (NUM_LANDMARKS, 3)
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
    assert 0.15 * image.shape[1] < x1 - x0 < 0.9 * image.shape[1]
    assert face.blendshapes.shape == (NUM_BLENDSHAPES,)
    assert ((face.blendshapes >= 0) & (face.blendshapes <= 1)).all()
    assert len(tracker.blendshape_names) == NUM_BLENDSHAPES
    assert tracker.blendshape_names[9] == "eyeBlinkLeft"
    rotation, translation = face.head_to_camera[:3, :3], face.head_to_camera[:3, 3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-4)
    assert translation[2] > 10  # OpenCV camera: the head is in front (+z), tens of cm away
    # A roughly frontal face: the head's "out of the face" axis points back at the camera.
    assert (rotation @ [0, 0, 1])[2] < -0.8


def test_several_faces_use_the_largest(tracker, pyfeat):
    image = read_image(pyfeat / "multi_face.jpg")
    faces = tracker.track_faces(image)
    chosen = tracker.track_image(image)
    assert len(faces) == 2 and chosen.faces_found == 2
    area = lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])  # noqa: E731
    assert area(chosen) == max(area(f) for f in faces) > min(area(f) for f in faces)


def test_no_face_photo(tracker, pyfeat):
    assert tracker.track_image(read_image(pyfeat / "free-mountain-vector-01.jpg")) is None


def test_every_frame_of_a_real_clip(tracker, pyfeat):
    video = read_video(pyfeat / "single_face.mp4")
    observations = tracker.track_frames(video.frames, video.times)
    assert all(o is not None for o in observations)
    clip = assemble_clip(observations, video.times)
    assert clip.filled == 0 and len(clip) == 72


def test_clip_without_a_face_is_an_error(tracker, pyfeat):
    video = read_video(pyfeat / "no_face.mp4", max_side=480)
    observations = tracker.track_frames(video.frames, video.times)
    with pytest.raises(
        InputError, match=r"driving video: no face found in any of the 95 frames looked at"
    ):
        assemble_clip(observations, video.times)


def test_face_appearing_late_is_filled_and_held(tracker, pyfeat):
    video = read_video(pyfeat / "noface_face.mov", max_side=480)
    observations = tracker.track_frames(video.frames, video.times)
    clip = assemble_clip(observations, video.times)
    first = int(np.flatnonzero(clip.tracked)[0])
    assert first > 10 and clip.filled >= first
    # Before the face appears, everything is held at its first tracked values.
    np.testing.assert_allclose(
        clip.landmarks[:first], np.broadcast_to(clip.landmarks[first], clip.landmarks[:first].shape)
    )
    np.testing.assert_allclose(
        clip.rotations[:first],
        np.broadcast_to(clip.rotations[first], clip.rotations[:first].shape),
        atol=1e-9,
    )


def test_gaps_are_interpolated_between_tracked_frames():
    from scipy.spatial.transform import Rotation

    from factorportrait.tracking import FaceObservation

    def observation(yaw, x):
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_euler("y", yaw, degrees=True).as_matrix()
        pose[:3, 3] = [x, 0, 50]
        return FaceObservation(
            np.full((NUM_LANDMARKS, 3), x),
            pose,
            np.full(NUM_BLENDSHAPES, x / 10),
            np.array([0, 0, 1, 1.0]),
            1,
        )

    clip = assemble_clip([observation(0, 0), None, None, observation(30, 3)], np.arange(4) / 10)
    assert clip.filled == 2 and list(clip.tracked) == [True, False, False, True]
    np.testing.assert_allclose(clip.translations[:, 0], [0, 1, 2, 3])
    np.testing.assert_allclose(clip.blendshapes[:, 0], [0, 0.1, 0.2, 0.3])
    yaws = Rotation.from_matrix(clip.rotations).as_euler("yxz", degrees=True)[:, 0]
    np.testing.assert_allclose(yaws, [0, 10, 20, 30], atol=1e-6)  # slerp: even steps


def test_landmarker_resolution_order(landmarker_path, tmp_path, monkeypatch):
    monkeypatch.delenv(model_file.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wrong = tmp_path / "wrong.task"
    wrong.write_bytes(b"not the model")
    # 1. explicit path, verified even when it is given
    assert resolve_face_landmarker(landmarker_path) == landmarker_path
    with pytest.raises(ModelFileError, match="not the official"):
        resolve_face_landmarker(wrong)
    # 2. the environment variable
    monkeypatch.setenv(model_file.ENV_VAR, str(landmarker_path))
    assert resolve_face_landmarker() == landmarker_path
    monkeypatch.setenv(model_file.ENV_VAR, str(wrong))
    with pytest.raises(ModelFileError, match=r"\$FACTORPORTRAIT_FACE_LANDMARKER.*not the official"):
        resolve_face_landmarker()
    monkeypatch.delenv(model_file.ENV_VAR)
    # 3. the copy shipped in assets/ (the next test); from here on a tree without it
    monkeypatch.setattr(model_file, "SHIPPED", tmp_path / "no-assets" / model_file.FILE_NAME)
    # 4. nothing cached and no download allowed: a clear error
    with pytest.raises(ModelFileError, match="not found"):
        resolve_face_landmarker(download=False)
    # 5. the download (from a local URL here) lands in the cache, verified
    monkeypatch.setattr(
        model_file,
        "FACE_LANDMARKER",
        model_file.FACE_LANDMARKER.__class__(url=landmarker_path.as_uri()),
    )
    cached = resolve_face_landmarker()
    assert cached == tmp_path / "cache" / "factorportrait" / "face_landmarker.task"
    assert cached.read_bytes() == landmarker_path.read_bytes()
    # 6. and is then used from the cache
    assert resolve_face_landmarker(download=False) == cached


def test_a_clone_works_offline_on_the_shipped_model(tmp_path, monkeypatch):
    # No variable, an empty cache and no network: the tracker runs on assets/' copy, which is
    # byte for byte MediaPipe's official file.
    monkeypatch.delenv(model_file.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    shipped = Path(__file__).resolve().parents[1] / "assets" / "face_landmarker.task"
    assert sha256_file(shipped) == FACE_LANDMARKER.sha256
    assert resolve_face_landmarker() == shipped
    with FaceTracker() as tracker:
        assert tracker.model_path == shipped
        face = tracker.track_image(read_image(shipped.parent / "example_portrait.jpg"))
    assert face is not None and face.faces_found == 1
    assert not (tmp_path / "cache" / "factorportrait").exists()  # nothing fetched or cached
    # A corrupted shipped copy is an error, not a silent download.
    broken = tmp_path / "face_landmarker.task"
    broken.write_bytes(shipped.read_bytes()[:-1] + b"x")
    monkeypatch.setattr(model_file, "SHIPPED", broken)
    with pytest.raises(ModelFileError, match="shipped in assets/.*not the official"):
        resolve_face_landmarker()


def test_download_with_wrong_content_is_refused_and_not_cached(tmp_path, monkeypatch):
    monkeypatch.delenv(model_file.ENV_VAR, raising=False)
    monkeypatch.setattr(model_file, "SHIPPED", tmp_path / "no-assets" / model_file.FILE_NAME)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake = tmp_path / "fake.task"
    fake.write_bytes(b"x" * 100)
    monkeypatch.setattr(
        model_file, "FACE_LANDMARKER", model_file.FACE_LANDMARKER.__class__(url=fake.as_uri())
    )
    with pytest.raises(ModelFileError, match="from the download.*not the official"):
        resolve_face_landmarker()
    assert list((tmp_path / "cache" / "factorportrait").iterdir()) == []
    assert FACE_LANDMARKER.sha256.startswith("64184e22")  # the real constant was untouched


def _two_faces_clip(pyfeat, frames: int, second_from: int) -> np.ndarray:
    """A still clip: a small face on the left throughout, a larger one on the right from frame
    ``second_from`` on (the same photo at two sizes)."""
    import cv2

    face = read_image(pyfeat / "single_face.jpg")
    small = cv2.resize(face, (160, round(160 * face.shape[0] / face.shape[1])))
    large = cv2.resize(face, (300, round(300 * face.shape[0] / face.shape[1])))
    canvas = np.full((max(large.shape[0], small.shape[0]) + 40, 520, 3), 90, np.uint8)
    clip = np.repeat(canvas[None], frames, axis=0)
    clip[:, 20 : 20 + small.shape[0], 10 : 10 + small.shape[1]] = small
    clip[second_from:, 20 : 20 + large.shape[0], 200 : 200 + large.shape[1]] = large
    return clip


def test_a_clip_tracked_in_parts_matches_an_unbroken_run_and_keeps_its_face(
    tracker, pyfeat, monkeypatch
):
    from factorportrait.tracking import landmarker

    video = read_video(pyfeat / "single_face.mp4")
    frames, times = video.frames[:32], video.times[:32]
    assert landmarker.TRACKING_PARTS == 2 and len(frames) >= 2 * landmarker.MIN_PART_FRAMES
    parted = tracker.track_frames(frames, times)
    monkeypatch.setattr(landmarker, "TRACKING_PARTS", 1)
    unbroken = tracker.track_frames(frames, times)
    difference = [np.abs(a.landmarks[:, :2] - b.landmarks[:, :2]).mean() for a, b in
                  zip(parted, unbroken, strict=True)]  # fmt: skip
    # The first part is the same run; the second starts afresh (on this clip it comes out
    # identical too: MediaPipe runs its detector on every frame when it looks for four faces).
    assert max(difference[:16]) == 0.0
    assert max(difference) < 1.0
    # The face followed is chosen across the parts: a larger face that turns up in the first
    # part does not take over the second part's first frame (a new part's largest).
    monkeypatch.setattr(landmarker, "TRACKING_PARTS", 2)
    clip = _two_faces_clip(pyfeat, 32, second_from=12)
    followed = tracker.track_frames(clip, np.arange(32) / 16.0)
    assert followed[20].faces_found == 2
    assert all(face is not None and face.box[2] < 190 for face in followed)  # the left face
