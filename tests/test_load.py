"""Many concurrent previews against the launched app (loopback, bounded): every one finishes
with its own answer (no cross-talk between sessions), latency percentiles are printed, and no
ffmpeg process is left behind."""

import concurrent.futures
import time
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from factorportrait.io.media import read_video

PORTRAIT = "assets/example_portrait.jpg"
DRIVING = "assets/example_driving.mp4"
REQUESTS = 8  # bounded: 2 CPU cores, each preview takes a second or two


def _children(pid: int) -> list[str]:
    """Command names of the app's child processes (from /proc, no shell)."""
    names = []
    for task in Path("/proc").glob("[0-9]*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            names.append(stat.split("(", 1)[1].rsplit(")", 1)[0])
    return names


def test_concurrent_previews_each_get_their_own_answer(app_server):
    url, process, _ = app_server
    orbit = open("camera_presets/orbit.json").read()
    # Every request asks for something different, so a mix-up would show.
    requests = [
        (5 + 4 * (i % 3), ("camera-only", "all-dynamic", "frontal-dynamic", "novel-dynamic")[i % 4])
        for i in range(REQUESTS)
    ]

    def one(request):
        frames, mode = request
        client = Client(url, verbose=False)  # one client = one session
        start = time.perf_counter()
        result = client.predict(
            handle_file(PORTRAIT),
            None if mode == "camera-only" else handle_file(DRIVING),
            mode,
            orbit,
            30,
            0,
            1.0,
            frames,
            16,
            256,
            api_name="/preview",
        )
        return request, result, time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        results = list(pool.map(one, requests, timeout=300))
    latencies = []
    for (frames, mode), (normals, rays, tracking, strip, summary), seconds in results:
        assert summary.startswith(f"{frames} frames at 256x256")
        if mode == "camera-only":
            assert "driving frames" not in summary
        else:
            assert f"Face tracked in {frames} driving frames" in summary
        for path in (normals, rays, tracking, strip):
            assert len(read_video(path).frames) == frames
        latencies.append(seconds)
    p50, p90, p100 = np.percentile(latencies, [50, 90, 100])
    print(f"\n{REQUESTS} concurrent previews: p50 {p50:.1f} s, p90 {p90:.1f} s, max {p100:.1f} s")
    assert process.poll() is None  # still serving
    time.sleep(0.5)
    assert "ffmpeg" not in " ".join(_children(process.pid))
    # Request folders go once Gradio has its copies: after the TTL (3 s here), the next
    # request sweeps every earlier one; only its own is left.
    outputs = Path(app_server[2])
    time.sleep(3.5)
    one((5, "camera-only"))
    assert len(list(outputs.glob("req-*"))) == 1
