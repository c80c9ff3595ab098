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
    from factorportrait.errors import InputError
    from factorportrait.pipelines.checkpoints import tiny_pipeline
    from factorportrait.pipelines.generation import load_pipeline

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


def _get(url: str) -> tuple[int, bytes]:
    """(HTTP status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


def _changed(component: str, position: int) -> str:
    """The hex string with one digit changed."""
    digit = "0" if component[position] != "0" else "1"
    return component[:position] + digit + component[position + 1 :]


def test_outputs_are_served_only_under_their_unguessable_names(app_server, tmp_path):
    """A real preview's videos are served at the URLs the app returned; the same names with
    their random part changed are refused, and so are the request folder the app wrote them to
    (a real file on disk) and the cache folders (no listing).

    Gradio serves any file that exists under its cache folder, so what keeps one user's outputs
    from another is that the folder name cannot be guessed: a SHA-256 of the content salted
    with a per-install random seed, not the content's plain hash, not shared between outputs."""
    import hashlib

    from gradio_client import Client, handle_file

    from factorportrait.io.media import read_video

    app_url, _, output_root = app_server
    client = Client(app_url, verbose=False, download_files=False)
    sweep = (ROOT / "camera_presets" / "sweep.json").read_text()
    outputs = client.predict(
        handle_file(str(ROOT / "assets" / "example_portrait.jpg")), None, "camera-only", sweep,
        30, 0, 1.0, 5, 16, 256, api_name="/preview",
    )  # fmt: skip
    files = {Path(item["path"]).name: item for item in outputs[:4]}
    assert set(files) == {"normals.mp4", "rays.mp4", "tracking.mp4", "strip.mp4"}

    # Each is served where the app said, and is the preview asked for (5 frames of 256x256).
    bodies, parts = {}, {}
    for name, item in files.items():
        status, bodies[name] = _get(item["url"])
        assert status == 200 and bodies[name][4:8] == b"ftyp"
        match = re.fullmatch(rf"(.*/file=)(/.+)/([0-9a-f]{{64}})/{re.escape(name)}", item["url"])
        assert match, item["url"]
        parts[name] = match.groups()  # (route prefix, cache folder, random part)
    (tmp_path / "normals.mp4").write_bytes(bodies["normals.mp4"])
    assert read_video(tmp_path / "normals.mp4").frames.shape == (5, 256, 256, 3)

    prefix, cache, real = parts["normals.mp4"]
    # Not a name anyone could compute from the content or reuse from another output.
    assert len({part for _, _, part in parts.values()}) == 4
    assert real not in {
        hashlib.sha256(bodies["normals.mp4"]).hexdigest(),
        hashlib.sha1(bodies["normals.mp4"]).hexdigest(),
    }
    # The same name with its random part changed, or taken from the content's plain hash or
    # from another output, is refused: only the returned URL leads to the file.
    guesses = [_changed(real, 0), _changed(real, 31), _changed(real, 63)]
    guesses += [hashlib.sha256(bodies["normals.mp4"]).hexdigest(), parts["rays.mp4"][2]]
    for guess in guesses:
        status, body = _get(f"{prefix}{cache}/{guess}/normals.mp4")
        assert status in (400, 403, 404) and not body, (guess, status)
    assert _get(f"{prefix}{cache}/{real}/normals.mp4") == (200, bodies["normals.mp4"])

    # The request folder the service wrote them to exists, and is not served either.
    written = [
        path
        for path in Path(output_root).glob("req-*/normals.mp4")
        if path.read_bytes() == bodies["normals.mp4"]
    ]
    assert written, "the service's own copy of the preview was not found"
    for path in written:
        assert _get(f"{prefix}{path}")[0] in (400, 403, 404)
    # No listing of the cache or of an output's folder.
    for folder in (cache, f"{cache}/", f"{cache}/{real}", f"{cache}/{real}/"):
        assert _get(f"{prefix}{folder}")[0] in (400, 403, 404), folder
