"""The compiled loops are loaded once per process on a thread of their own, while the portrait
is read and the tracker starts (conditioning.build.start_loading_kernels)."""

import json
import subprocess
import sys

SCRIPT = """
import json, threading
from factorportrait.conditioning import build
from factorportrait.head_pose import rasterizer
from factorportrait.viewpoint import plucker, visualize

kernels = {
    "rasterize": rasterizer._rasterize_frames,
    "normal colours": rasterizer._encode_normals,
    "rays": plucker._rays_frames,
    "ray colours": visualize._encode_rays,
    "moment scale": visualize._largest_moment_squared,
}
before = {name: len(kernel.signatures) for name, kernel in kernels.items()}
build.start_loading_kernels()
first = build._kernels_loading
build.start_loading_kernels()  # a second request: the same thread, not another
first.join(timeout=120)
print(json.dumps({
    "before": before,
    "after": {name: len(kernel.signatures) for name, kernel in kernels.items()},
    "same_thread": build._kernels_loading is first,
    "daemon": first.daemon,
}))
"""


def _last_line(script: str):
    """The JSON value ``script`` prints last, run in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_compiled_loop_is_loaded_once_in_the_background():
    report = _last_line(SCRIPT)
    assert set(report["before"].values()) == {0}  # a fresh process has none loaded
    assert all(count >= 1 for count in report["after"].values()), report["after"]
    assert report["same_thread"] and report["daemon"]  # never holds up the process's exit


def test_the_web_service_loads_them_when_it_starts():
    """The demo's Service starts loading them as it is made, so the first Preview (after the
    page opens and the uploads are tracked) does not wait for them."""
    script = (
        "from factorportrait.conditioning import build\n"
        "from factorportrait.ui.service import Service\n"
        "assert build._kernels_loading is None\n"
        "Service(pipeline=None)\n"
        "assert build._kernels_loading is not None\n"
        "build._kernels_loading.join(timeout=120)\n"
        "from factorportrait.head_pose import rasterizer\n"
        "print(len(rasterizer._rasterize_frames.signatures))\n"
    )
    assert _last_line(script) >= 1
