"""The CPU commands start without the model stack: `cameras` and `preview` never import torch,
diffusers or transformers (seconds of start-up each: torch alone is two on this machine), and
`cameras` loads no face tracker."""

import json
import subprocess
import sys

MODEL_STACK = ("diffusers", "transformers")


def _loaded_after(code: str, report: bool = True) -> set[str]:
    """The top-level packages in sys.modules after running ``code`` in a fresh interpreter
    (``report=False``: the code prints them itself, as its last line)."""
    script = "import json, sys\n" + code
    if report:
        script += "\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_the_cli_and_parsing_loads_no_model_stack():
    loaded = _loaded_after(
        "from factorportrait.cli import build_parser\n"
        "build_parser().parse_args(['preview', '--portrait', 'p.jpg', '--mode', 'camera-only',"
        " '--out', 'o'])"
    )
    assert "factorportrait" in loaded
    assert not loaded & {*MODEL_STACK, "torch", "mediapipe"}


def test_the_cameras_command_loads_no_model_stack(tmp_path):
    out = tmp_path / "cameras"
    loaded = _loaded_after(
        "from factorportrait.cli import main\n"
        f"assert main(['cameras', '--preset', 'orbit', '--frames', '5', '--size', '32',"
        f" '--out', {str(out)!r}]) == 0"
    )
    assert (out / "rays.mp4").is_file()  # it did run
    assert not loaded & {*MODEL_STACK, "torch", "mediapipe"}


def test_the_preview_command_loads_no_model_stack(pyfeat, landmarker_path, tmp_path):
    """`python -m factorportrait preview`, as a user runs it (``__main__.run``)."""
    out = tmp_path / "preview"
    # Every stage runs: tracking, head pose, normals, rays, expression, the videos.
    args = ["preview", "--portrait", str(pyfeat / "single_face.jpg"), "--mode", "all-dynamic",
            "--driving", str(pyfeat / "single_face.mp4"), "--frames", "5", "--size", "32",
            "--landmarker", str(landmarker_path), "--out", str(out)]  # fmt: skip
    # The command exits from run(): the report is an exit handler, which run() still runs.
    loaded = _loaded_after(
        "import atexit\n"
        "atexit.register(lambda: print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})),"
        " flush=True))\n"
        f"from factorportrait.__main__ import run\nrun({args!r})",
        report=False,
    )
    assert (out / "normals.mp4").is_file() and (out / "rays.mp4").is_file()  # it did run
    assert "mediapipe" in loaded  # it did track
    # MediaPipe's drawing utilities (matplotlib.pyplot: about a second) are never run.
    assert not loaded & {*MODEL_STACK, "torch", "matplotlib"}


def test_the_mediapipe_modules_a_command_leaves_unrun_still_load_when_read():
    """Deferred, not removed: the drawing utilities and the audio tasks work on first use."""
    loaded = _loaded_after(
        "from factorportrait.cli.lean_imports import defer_unused_modules\n"
        "defer_unused_modules()\n"
        "from mediapipe.tasks.python import audio, vision\n"
        "assert 'matplotlib' not in sys.modules\n"
        "assert vision.drawing_utils.DrawingSpec().thickness == 2\n"
        "assert audio.AudioClassifier.__name__ == 'AudioClassifier'\n"
        "assert vision.FaceLandmarker.__name__ == 'FaceLandmarker'"
    )
    assert {"mediapipe", "matplotlib"} <= loaded


def test_outside_the_command_line_mediapipe_is_imported_whole():
    """The web demo and library use defer nothing: Python 3.11's lazy modules have no lock, and
    the demo's threads could first touch one at once."""
    loaded = _loaded_after(
        "import numpy as np\n"
        "from factorportrait.tracking import FaceTracker\n"
        "with FaceTracker() as tracker:\n"
        "    tracker.track_faces(np.zeros((64, 64, 3), np.uint8))"
    )
    assert {"mediapipe", "matplotlib"} <= loaded
