"""Security regressions that are cheap to check on every run: no pickle or shell anywhere in
the code, and the launched app's file routes do not serve files outside what it returned."""

import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
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


def test_checkpoints_load_from_safetensors_only(tmp_path):
    from factorportrait.checkpoints import tiny_pipeline
    from factorportrait.errors import InputError
    from factorportrait.generation import load_pipeline

    tiny_pipeline(seed=0).save_pretrained(tmp_path / "unsafe", safe_serialization=False)
    assert list((tmp_path / "unsafe").rglob("*.bin"))
    with pytest.raises(InputError, match="cannot load it"):
        load_pipeline(tmp_path / "unsafe", device="cpu")


def test_odd_file_names_work_and_never_reach_a_shell(tmp_path, landmarker_path, pyfeat):
    import shutil

    from factorportrait.cli import main

    odd = "a b; $(touch PWNED) `id` 'quote' \\\"ü 名前 " + "x" * 150
    portrait = tmp_path / f"{odd}.jpg"
    driving = tmp_path / f"{odd}.mp4"
    shutil.copy("assets/example_portrait.jpg", portrait)
    shutil.copy(pyfeat / "single_face.mp4", driving)  # has sound: exercises the audio mux too
    out = tmp_path / f"out {odd[:40]}"
    assert (
        main(
            [
                "preview",
                "--portrait",
                str(portrait),
                "--driving",
                str(driving),
                "--mode",
                "frontal-dynamic",
                "--frames",
                "5",
                "--size",
                "64",
                "--landmarker",
                str(landmarker_path),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "normals.mp4").is_file()
    from factorportrait.io import write_video
    from factorportrait.io.video import mux_audio

    silent = write_video(tmp_path / f"{odd[:60]}.mp4", np.zeros((8, 32, 32, 3), np.uint8), 8)
    assert mux_audio(silent, driving, tmp_path / f"{odd[:50]} sound.mp4").is_file()
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


def test_outputs_cannot_be_listed_or_guessed(app_url):
    for route in (
        "gradio_api/file=/tmp/gradio",
        "gradio_api/file=/tmp/gradio/",
        "gradio_api/file=/tmp/gradio/" + "0" * 64 + "/result.mp4",
    ):
        try:
            with urllib.request.urlopen(app_url + route, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            assert error.code in (400, 403, 404)
        else:
            raise AssertionError(f"{route} served {len(body)} bytes")
