"""The shipped expressive driving clip: MediaPipe reads back the expressions its generator
(assets/make_expressive_clip.py) put in, at the times its SCHEDULE says."""

from pathlib import Path

import numpy as np
import pytest

from assets import make_expressive_clip as generator
from factorportrait.config import LATENT
from factorportrait.io.media import read_video

CLIP = Path(__file__).resolve().parents[1] / "assets" / "example_expressive.mp4"

# Each expression's blendshapes, and by how much their median over the frames where the
# expression is fully on must exceed their highest value in any neutral frame (all expressions
# off). MediaPipe scores a closed eye well below 1 (about 0.3 on this clip), hence blink's
# smaller margin; the others read 0.4 to 1 against under 0.15 at rest.
EXPECTED = {
    "jaw": (["jawOpen"], 0.25),
    "blink": (["eyeBlinkLeft", "eyeBlinkRight"], 0.15),
    "smile": (["mouthSmileLeft", "mouthSmileRight"], 0.5),
    "brow": (["browInnerUp"], 0.4),
}


@pytest.fixture(scope="module")
def tracked(tracker):
    video = read_video(CLIP)
    faces = [tracker.track_image(frame) for frame in video.frames]
    assert all(face is not None for face in faces), "a frame of the clip lost the face"
    names = tracker.blendshape_names
    scores = np.stack([face.blendshapes for face in faces])
    return video, {name: scores[:, names.index(name)] for name in names}


def test_the_clip_is_small_and_drives_a_default_request(tracked):
    video, _ = tracked
    frames, height, width = video.frames.shape[:3]
    assert frames == generator.FRAMES and LATENT.fits(frames)  # no trimming needed
    assert max(height, width) <= 512 and CLIP.stat().st_size < 400_000
    assert video.declared_fps == generator.FPS and not video.has_audio


@pytest.mark.parametrize("expression", sorted(EXPECTED))
def test_tracking_reads_back_each_expression_when_the_generator_plays_it(tracked, expression):
    video, scores = tracked
    times = np.arange(len(video.frames)) / generator.FPS
    on = np.array([generator.weight(expression, t) for t in times]) == 1.0
    neutral = np.array([all(generator.weight(name, t) == 0 for name in EXPECTED) for t in times])
    assert on.sum() >= 3 and neutral.sum() >= 3
    names, margin = EXPECTED[expression]
    for name in names:
        at_peak, at_rest = np.median(scores[name][on]), scores[name][neutral].max()
        assert at_peak >= at_rest + margin, (
            f"{name}: {at_peak:.2f} at the peak, {at_rest:.2f} at rest"
        )
