"""A driving clip whose face shows only after an intro starts where the face does, and says so;
a clip cut to 4k+1 frames says so too."""

from pathlib import Path

import numpy as np

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.io import write_video
from factorportrait.io.media import read_video

ROOT = Path(__file__).resolve().parents[1]
FPS = 16


def _late_face_clip(tmp_path, intro_s):
    """A black title card for ``intro_s`` seconds, then the example clip (real frames)."""
    example = read_video(ROOT / "assets/example_driving.mp4").frames
    intro = np.zeros((int(intro_s * FPS), *example.shape[1:]), np.uint8)
    intro[:, 40:60, 40:300] = 255  # a "title": something on screen, no face
    path = tmp_path / "late_face.mp4"
    write_video(path, np.concatenate([intro, example]), FPS)
    return path, example


def test_a_clip_with_an_intro_starts_where_the_face_appears(tmp_path, tracker):
    path, example = _late_face_clip(tmp_path, 2.5)  # beyond the 9 frames asked for
    settings = ConditioningSettings(mode="frontal-dynamic", frames=9, height=64, width=64)
    cond = build_conditioning(
        ROOT / "assets/example_portrait.jpg", path, settings=settings, tracker=tracker
    )
    assert "driving video: no face before 2.5 s" in " ".join(cond.report.warnings)
    # The driving frames are the example's first ones, not the title card.
    first = cond.driving_frames[0].astype(float)
    assert first.mean() > 60 and abs(first.mean() - example[0].mean()) < 10
    assert cond.report.clip.frames_filled == 0  # every frame shows the face


def test_a_clip_cut_to_4k_plus_1_frames_says_so(tracker):
    # The example clip: 56 frames at 16 fps; with no frame count asked the output is 53 (4k+1).
    settings = ConditioningSettings(mode="frontal-dynamic", height=64, width=64)
    cond = build_conditioning(
        ROOT / "assets/example_portrait.jpg",
        ROOT / "assets/example_driving.mp4",
        settings=settings,
        tracker=tracker,
    )
    assert cond.frames == 53
    assert (
        "driving video gives 56 frames at 16 fps: the output uses the first 53 "
        "(4k+1 frames, as the video model needs)"
    ) in cond.report.warnings
    assert not any("no face before" in w for w in cond.report.warnings)
