"""Tracking done once per upload: the web service's previews of uploads already tracked do not
run MediaPipe again, whatever the mode, path or size; new content is tracked; the cache is
bounded and hands out private copies."""

import threading
from pathlib import Path

import numpy as np
import pytest

from factorportrait.conditioning import ConditioningSettings
from factorportrait.tracking import cache as cache_module
from factorportrait.tracking.cache import TrackingCache, content_key
from factorportrait.tracking.landmarker import FaceTracker
from factorportrait.ui.service import Service
from factorportrait.ui.upload_tracking import MAX_WAITING_TRACKING
from factorportrait.viewpoint import load_preset

ASSETS = Path(__file__).resolve().parent.parent / "assets"
PORTRAIT = str(ASSETS / "example_portrait.jpg")
DRIVING = str(ASSETS / "example_driving.mp4")


@pytest.fixture
def mediapipe_calls(monkeypatch):
    """Every call into MediaPipe tracking, by method name."""
    calls = []
    for name in ("track_faces", "track_frames"):
        original = getattr(FaceTracker, name)

        def counted(self, *args, _original=original, _name=name):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(FaceTracker, name, counted)
    return calls


def test_a_second_preview_of_the_same_uploads_does_not_track_again(
    mediapipe_calls, landmarker_path, tmp_path
):
    service = Service(landmarker=str(landmarker_path), output_root=tmp_path)
    service.track_photo(PORTRAIT)  # the upload handler tracks the photo
    assert mediapipe_calls == ["track_faces"]
    settings = ConditioningSettings(mode="all-dynamic", frames=9, height=64, width=64)
    first = service.preview(PORTRAIT, DRIVING, settings, load_preset("orbit"))
    # The portrait was tracked on upload: the first preview tracks only the clip (its first
    # frame where the face search looks, then the clip).
    assert mediapipe_calls == ["track_faces", "track_faces", "track_frames"]
    mediapipe_calls.clear()
    again = service.preview(PORTRAIT, DRIVING, settings, load_preset("orbit"))
    assert mediapipe_calls == []
    np.testing.assert_array_equal(again.conditioning.normals, first.conditioning.normals)
    assert again.conditioning.blendshape_names == first.conditioning.blendshape_names
    # Another mode, path and size re-render without tracking.
    other = ConditioningSettings(mode="frontal-dynamic", frames=9, height=96, width=64)
    service.preview(PORTRAIT, DRIVING, other, None)
    service.preview(PORTRAIT, DRIVING, settings, load_preset("sweep"))
    assert mediapipe_calls == []
    # Other content is tracked: the clip at another frame rate picks other frames.
    service.preview(PORTRAIT, DRIVING, ConditioningSettings(**{**vars(settings), "fps": 12}))
    assert mediapipe_calls == ["track_frames"]


def test_the_cache_is_bounded_and_hands_out_private_copies(landmarker_path):
    cache = TrackingCache(max_entries=2)
    tracker = cache.tracker(landmarker_path)
    faces = {}
    for seed in range(3):
        image = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), np.uint8)
        faces[seed] = content_key(image)
        cache.put(faces[seed], [seed], ["name"])
    assert len(cache) == 2 and cache.get(faces[0]) is None  # the oldest went out
    result, names = cache.get(faces[2])
    result.append("changed by a caller")
    assert cache.get(faces[2])[0] == [2]
    tracker.close()


def test_the_content_key_follows_the_pixels_not_the_name():
    image = np.zeros((8, 8, 3), np.uint8)
    same = image.copy()
    assert content_key(image) == content_key(same)
    same[3, 4, 1] = 1
    assert content_key(image) != content_key(same)
    # Same bytes in another shape are other content.
    assert content_key(image) != content_key(image.reshape(8, 24, 1))


def test_content_being_tracked_is_waited_for_not_tracked_twice():
    """A Preview clicked while the upload's own tracking runs waits for it: the tracker runs
    once and both callers get the result (each a copy of its own); a tracking that fails
    leaves the content to the next caller."""
    cache = TrackingCache()
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_tracking():
        calls.append("tracked")
        started.set()
        release.wait(timeout=30)
        return ["faces"], ["names"]

    results = {}
    first = threading.Thread(
        target=lambda: results.update(first=cache.get_or_track("clip", slow_tracking))
    )
    first.start()
    started.wait(timeout=30)
    second = threading.Thread(
        target=lambda: results.update(second=cache.get_or_track("clip", slow_tracking))
    )
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive()  # waiting, not tracking
    release.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert calls == ["tracked"]
    assert results["first"] == results["second"] == (["faces"], ["names"])
    assert results["first"][0] is not results["second"][0]
    assert (cache.hits, cache.misses) == (1, 1)

    def broken_tracking():
        raise RuntimeError("tracker failed")

    with pytest.raises(RuntimeError):
        cache.get_or_track("other", broken_tracking)
    retry = threading.Thread(  # on a thread: were the failed run never cleared, it would wait
        target=lambda: results.update(retry=cache.get_or_track("other", lambda: ([1], None))),
        daemon=True,
    )
    retry.start()
    retry.join(timeout=30)
    assert results.get("retry") == ([1], None)  # tracked anew


def test_a_caller_waits_for_a_stuck_tracking_only_so_long(monkeypatch):
    """Were another caller's tracking of the same content stuck, a Preview would not hang
    with it: past TRACKING_WAIT_S it tracks a copy of its own."""
    monkeypatch.setattr(cache_module, "TRACKING_WAIT_S", 0.2)
    cache, started, release = TrackingCache(), threading.Event(), threading.Event()

    def stuck():
        started.set()
        release.wait(timeout=30)
        return ["late"], None

    first = threading.Thread(target=lambda: cache.get_or_track("clip", stuck), daemon=True)
    first.start()
    started.wait(timeout=30)
    assert cache.get_or_track("clip", lambda: (["own"], None)) == (["own"], None)
    release.set()
    first.join(timeout=30)


def test_the_uploads_are_tracked_for_the_next_preview_in_advance(
    mediapipe_calls, landmarker_path, tmp_path
):
    """What the page runs after an upload (Service.track_in_background, on the service's own
    thread): the next Preview with the same settings tracks nothing; a request that cannot
    be made yet tracks nothing."""
    service = Service(landmarker=str(landmarker_path), output_root=tmp_path)
    settings = ConditioningSettings(mode="all-dynamic", frames=9, height=64, width=64)
    waiting = service.track_in_background(PORTRAIT, None, settings, load_preset("orbit"))
    assert waiting.result(timeout=120) is False
    assert mediapipe_calls == []  # no clip yet for a driven mode: nothing done
    waiting = service.track_in_background(PORTRAIT, DRIVING, settings, load_preset("orbit"))
    assert waiting.result(timeout=120) is True
    assert "track_frames" in mediapipe_calls
    mediapipe_calls.clear()
    service.preview(PORTRAIT, DRIVING, settings, load_preset("orbit"))
    assert mediapipe_calls == []


def test_tracking_ahead_is_bounded_and_its_failures_stay_in_the_log(tmp_path, caplog):
    """At most MAX_WAITING_TRACKING uploads wait (more are left to their Preview), and an
    error in the work done ahead is logged, never raised to the page."""
    service = Service(output_root=tmp_path)
    release = threading.Event()
    service.track_for_preview = lambda *args: release.wait(timeout=30)
    waiting = [service.track_in_background(PORTRAIT, DRIVING, None) for _ in range(5)]
    assert all(w is not None for w in waiting[:MAX_WAITING_TRACKING])
    assert waiting[MAX_WAITING_TRACKING] is None
    release.set()
    assert all(w.result(timeout=30) for w in waiting[:MAX_WAITING_TRACKING])

    def broken(*args):
        raise RuntimeError("the landmarker broke")

    service.track_for_preview = broken
    assert service.track_in_background(PORTRAIT, DRIVING, None).result(timeout=30) is False
    assert "the landmarker broke" in caplog.text
    assert service.track_in_background(PORTRAIT, DRIVING, None) is not None  # count released
