"""Security regressions that are cheap to check on every run: no pickle or shell anywhere in
the code, and the launched app's file routes do not serve files outside what it returned."""

import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for p in [ROOT / "app.py", *ROOT.glob("factorportrait/**/*.py"), *ROOT.glob("assets/*.py")]
    if p.is_file()
]
FORBIDDEN = {
    r"\bimport pickle\b|\bpickle\.load|\bimport dill\b|joblib\.load": "pickle-like loading",
    r"torch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
    r"shell\s*=\s*True|os\.system\(|os\.popen\(": "a shell command",
    r"allow_pickle\s*=\s*True": "numpy pickle loading",
}


def test_no_pickle_and_no_shell_in_the_code():
    assert len(SOURCES) > 30
    problems = [
        f"{path.relative_to(ROOT)}: {what}"
        for path in SOURCES
        for pattern, what in FORBIDDEN.items()
        if re.search(pattern, path.read_text())
    ]
    assert problems == []


def test_the_scan_would_catch_them(tmp_path):
    sample = "import pickle\nx = torch.load(f)\nsubprocess.run(c, shell=True)\n"
    hits = [what for pattern, what in FORBIDDEN.items() if re.search(pattern, sample)]
    assert len(hits) == 3


@pytest.mark.parametrize(
    "route",
    [
        "gradio_api/file=/etc/passwd",
        "gradio_api/file=../../../../etc/passwd",
        "gradio_api/file=%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "file=/etc/passwd",
        "gradio_api/file=app.py",
    ],
)
def test_file_routes_refuse_paths_outside_the_app(app_url, route):
    try:
        with urllib.request.urlopen(app_url + route, timeout=10) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        assert error.code in (400, 403, 404, 405)
        return
    assert b"root:" not in body and b"create_service" not in body


def test_oversize_upload_is_refused_with_413(app_url, tmp_path):
    import httpx

    from factorportrait.config import LIMITS

    big = tmp_path / "big.mp4"
    with open(big, "wb") as handle:
        handle.truncate(LIMITS.max_video_bytes + 1024)  # sparse: no 200 MB written to disk
    with open(big, "rb") as handle:
        response = httpx.post(app_url + "gradio_api/upload", files={"files": handle}, timeout=60)
    assert response.status_code == 413
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1024)
    with open(small, "rb") as handle:
        assert (
            httpx.post(
                app_url + "gradio_api/upload", files={"files": handle}, timeout=30
            ).status_code
            == 200
        )
