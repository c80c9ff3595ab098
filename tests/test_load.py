"""Many previews sent at once to the launched app (loopback, bounded). The app runs at most two
previews at a time (its queue's concurrency limit, for a 2-core Space); the rest wait in its
queue. Every request has the same size and length but its own camera path and mode, and every
answer must carry its own request's (a swap of two answers would show); latency percentiles
are printed; no ffmpeg process is left behind; old request folders are swept."""

import concurrent.futures
import json
import time
from pathlib import Path

import numpy as np
from conftest import wait_for
from gradio_client import Client, handle_file

from factorportrait.io.media import read_video
from factorportrait.ui.service import last_change

PORTRAIT = "assets/example_portrait.jpg"
DRIVING = "assets/example_driving.mp4"
FRAMES, SIZE = 9, 256
# One request each: the path turns the camera by this azimuth over the clip; the modes alternate.
AZIMUTHS = (-45.0, -30.0, -15.0, -5.0, 10.0, 20.0, 35.0, 50.0)  # bounded: 2 CPU cores


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


def _turn(azimuth: float) -> str:
    key = {"elevation": 0.0, "distance": 1.0, "roll": 0.0, "fov": 30.0}
    return json.dumps(
        {
            "version": 1,
            "name": f"turn{abs(azimuth):g}" + ("-left" if azimuth > 0 else "-right"),
            "description": "load test",
            "anchor": "portrait",
            "easing": "linear",
            "keyframes": [{"t": 0.0, "azimuth": 0.0, **key}, {"t": 1.0, "azimuth": azimuth, **key}],
        }
    )


def _preview(client: Client, mode: str, azimuth: float):
    return client.predict(
        handle_file(PORTRAIT),
        None if mode == "camera-only" else handle_file(DRIVING),
        mode,
        _turn(azimuth),
        30,
        0,
        1.0,
        FRAMES,
        16,
        SIZE,
        api_name="/preview",
    )


def _centre_direction_x(rays_video: str) -> float:
    """x of the ray through the image centre in the last frame, read from the ray-map video
    (left half: direction as (d + 1) / 2 in RGB), in the first camera's frame."""
    last = read_video(rays_video).frames[-1].astype(np.float64)
    height, width = last.shape[0], last.shape[1] // 2
    patch = last[height // 2 - 2 : height // 2 + 3, width // 2 - 2 : width // 2 + 3, 0]
    return patch.mean() / 127.5 - 1.0


def test_eight_queued_previews_two_at_a_time_each_get_their_own_answer(app_server):
    url, process, outputs = app_server
    requests = [
        (("camera-only", "all-dynamic")[i % 2], azimuth) for i, azimuth in enumerate(AZIMUTHS)
    ]

    # One client per request (one session each), connected first: then all are sent at once.
    clients = [Client(url, verbose=False, httpx_kwargs={"timeout": 120}) for _ in requests]

    def one(client, request):
        start = time.perf_counter()
        result = _preview(client, *request)
        return result, time.perf_counter() - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(requests)) as pool:
        results = list(pool.map(one, clients, requests, timeout=600))
    # The camera turns by the azimuth A about the head, whose up axis is tilted from the
    # camera's by the portrait's own elevation e (about 15 degrees here): the centre ray of
    # the last camera, in the first camera's frame, has x = -sin(A) cos(e) (a turn to the
    # right, A > 0, looks back to the left). cos(e) is taken as 0.95 +- 0.05.
    expected = -np.sin(np.radians(AZIMUTHS)) * 0.95
    latencies = []
    for index, ((mode, azimuth), (result, seconds)) in enumerate(
        zip(requests, results, strict=True)
    ):
        normals, rays, tracking, strip, summary = result
        # The page's summary names the mode first, then what the build made.
        assert summary.startswith(f"**Mode: {mode}"), summary
        assert f"{FRAMES} frames at {SIZE}x{SIZE}" in summary, summary
        if mode == "camera-only":
            assert "driving frames" not in summary, (mode, azimuth, summary)
        else:
            assert f"Face tracked in {FRAMES} driving frames" in summary, (mode, azimuth, summary)
        for path in (normals, rays, tracking, strip):
            assert len(read_video(path).frames) == FRAMES
        x = _centre_direction_x(rays)
        assert abs(x - expected[index]) < 0.06, (mode, azimuth, x, expected[index])
        assert np.abs(expected - x).argmin() == index, (mode, azimuth, x)  # its own, no other's
        latencies.append(seconds)
    p50, p90, p100 = np.percentile(latencies, [50, 90, 100])
    print(f"\n{len(requests)} queued previews: p50 {p50:.1f} s, p90 {p90:.1f} s, max {p100:.1f} s")
    assert process.poll() is None  # still serving
    wait_for(
        lambda: "ffmpeg" not in " ".join(_children(process.pid)),
        timeout=30,
        what="the app's ffmpeg processes to end",
    )
    # Request folders go once Gradio has its copies: once nothing in any of them changed for
    # the TTL (3 s here), the next request sweeps them all; only its own is left.
    ttl = 3.0
    earlier = set(Path(outputs).glob("req-*"))
    assert earlier
    wait_for(
        lambda: all(time.time() - last_change(p) > ttl for p in earlier),
        timeout=60,
        what="the request folders to pass the output TTL",
        poll=0.2,
    )
    _preview(clients[0], "camera-only", 10.0)
    left = list(Path(outputs).glob("req-*"))
    assert len(left) == 1 and left[0] not in earlier, (left, earlier)
