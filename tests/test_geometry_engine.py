"""The geometric engine on known answers, re-tracked from its own frames by the project's
FaceTracker (the way the evaluation harness measures a generated video):

- a frontal, motionless, neutral request gives the portrait's crop back over the face;
- a head yawed 20 degrees in the request is re-tracked at 20 +- 3;
- the expressive clip's blinks and open jaw are re-tracked from the result (correlation);
- camera-only along the orbit: the expression stays frozen while the view turns as the path;
- the result's face lies inside the normal maps' mask (one source of truth for the pose).

Small requests (256 x 256), shared per module.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from factorportrait.conditioning import ConditioningSettings, build_conditioning
from factorportrait.engines.geometry import GEOMETRY_NOTICE, SceneCache, Stopped, render_geometry
from factorportrait.evaluation import metrics
from factorportrait.head_pose import head_yaw_pitch_roll, render_head
from factorportrait.io import write_video
from factorportrait.io.media import read_image

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SIZE = 256
# The issue asks at least 30 dB; the engine gives 38.9 (projective texturing is exact at the
# photo's own view; what is left is the still clip's tracking noise and the jaw's edge). 35 dB
# also catches the subtler bugs: texture looked up half a pixel off (30.6 dB) or from a photo
# blurred by a pixel (32.9 dB).
FACE_PSNR_DB = 35.0
YAW_DEG, YAW_TOLERANCE_DEG = 20.0, 3.0
EXPRESSION_CORRELATION = 0.8
# Camera-only: the re-tracked view against the path's. MediaPipe reads a face seen from up to
# 30 degrees round with some pitch the path does not have (seen: 5.1 degrees at most, mostly
# about the horizontal axis, on a 31.6 degree turn; 31.6 with the path ignored).
VIEW_TOLERANCE_DEG = 6.5
# What a driving clip changes stays put: the jaw and the blinks (the expressive clip moves them
# by 0.3-0.5; seen here: at most 0.07). MediaPipe reads the brows higher when the camera looks
# down on the face (the orbit's 20 degrees of elevation; the brows sit under the fringe): seen
# 0.10-0.28 as the engine's hair changed, where the expressive clip moves them by 0.75.
FROZEN_BLENDSHAPES = {
    "jawOpen": 0.15,
    "eyeBlinkLeft": 0.15,
    "eyeBlinkRight": 0.15,
    "browInnerUp": 0.3,
}


def _settings(**kwargs):
    return ConditioningSettings(height=SIZE, width=SIZE, **kwargs)


def _retrack(tracker, frames):
    """Each frame tracked alone (image mode): landmarks (F,478,3), rotations (F,3,3) head ->
    camera, blendshapes (F,52); every frame must show a face."""
    found = [tracker.track_image(frame) for frame in frames]
    assert all(face is not None for face in found), "a rendered frame shows no face"
    return SimpleNamespace(
        landmarks=np.stack([f.landmarks for f in found]),
        rotations=np.stack([f.head_to_camera[:3, :3] for f in found]),
        blendshapes=np.stack([f.blendshapes for f in found]),
    )


@pytest.fixture(scope="module")
def portrait():
    return read_image(ASSETS / "example_portrait.jpg")


@pytest.fixture(scope="module")
def still(portrait, tracker, tmp_path_factory):
    """Frontal-dynamic driven by a motionless, neutral clip: the framed portrait itself."""
    first = build_conditioning(
        portrait, None, settings=_settings(mode="camera-only", frames=17), tracker=tracker
    )
    clip = tmp_path_factory.mktemp("still") / "still.mp4"
    write_video(clip, np.repeat(first.reference[None], 17, axis=0), 16.0)
    return build_conditioning(portrait, clip, settings=_settings(frames=17), tracker=tracker)


@pytest.fixture(scope="module")
def expressive(portrait, tracker):
    conditioning = build_conditioning(
        portrait, ASSETS / "example_expressive.mp4", settings=_settings(frames=65), tracker=tracker
    )
    frames = render_geometry(conditioning)
    return conditioning, frames, _retrack(tracker, frames)


@pytest.fixture(scope="module")
def driven(portrait, tracker):
    """The example driving clip: head roll, sway and a push-in, no expression."""
    conditioning = build_conditioning(
        portrait, ASSETS / "example_driving.mp4", settings=_settings(frames=25), tracker=tracker
    )
    frames = render_geometry(conditioning)
    return conditioning, frames, _retrack(tracker, frames)


@pytest.fixture(scope="module")
def orbit(portrait, tracker):
    conditioning = build_conditioning(
        portrait, None, settings=_settings(mode="camera-only", frames=25), tracker=tracker
    )
    frames = render_geometry(conditioning)
    return conditioning, frames, _retrack(tracker, frames)


def _face_hull(landmarks, shape):
    import cv2

    hull = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(landmarks[:, :2].astype(np.int32)), 1)
    return hull.astype(bool)


def test_the_api_renders_uint8_frames_reports_progress_and_stops(still):
    calls = []
    frames = render_geometry(still, progress=lambda done, total: calls.append((done, total)))
    assert frames.shape == (17, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert calls == [(k, 17) for k in range(1, 18)]
    asked = []

    def stop_at_five():
        asked.append(1)
        return len(asked) > 5

    with pytest.raises(Stopped) as stopped:
        render_geometry(still, should_stop=stop_at_five)
    assert stopped.value.frame_index == 5
    assert "not diffusion" in GEOMETRY_NOTICE and "GEOMETRIC WARP" in GEOMETRY_NOTICE


def test_a_frontal_motionless_neutral_request_gives_back_the_portraits_crop(still):
    frames = render_geometry(still)
    face = _face_hull(still.source_landmarks, still.reference.shape)
    reference = still.reference[face].astype(np.float64)
    psnr = [
        10 * np.log10(255.0**2 / np.mean((frame[face].astype(np.float64) - reference) ** 2))
        for frame in frames
    ]
    print(f"PSNR over the face: min {min(psnr):.2f} dB, mean {np.mean(psnr):.2f} dB")
    assert min(psnr) >= FACE_PSNR_DB, f"PSNR over the face {np.round(psnr, 1)} dB"


@pytest.mark.parametrize("side", [1.0, -1.0], ids=["left", "right"])
def test_a_head_yawed_20_degrees_is_retracked_at_20(still, tracker, side):
    """Both ways: MediaPipe reads this portrait's turns a little asymmetrically (seen 17.9 one
    way, 19.6 the other)."""
    count = len(still.c2w)
    requested_yaw = np.linspace(0.0, side * YAW_DEG, count)
    # A turn about the camera's vertical axis through the head (the portrait's camera looks
    # down on it a little: a turn about the head's own up axis would read as some roll).
    in_camera = metrics.requested_head_in_camera(still.c2w, still.head_pose)
    turned = in_camera.copy()
    turned[:, :3, :3] = (
        Rotation.from_euler("y", requested_yaw[:, None], degrees=True).as_matrix()
        @ in_camera[:, :3, :3]
    )
    still_yawed = _replace(still, head_pose=still.c2w @ turned)
    measured = _retrack(tracker, render_geometry(still_yawed))
    asked = metrics.requested_head_in_camera(still.c2w, still_yawed.head_pose)[:, :3, :3]
    asked_yaw = head_yaw_pitch_roll(asked)[:, 0]
    seen_yaw = head_yaw_pitch_roll(measured.rotations)[:, 0]
    asked_turn, seen_turn = asked_yaw - asked_yaw[0], seen_yaw - seen_yaw[0]
    print(f"yaw asked {asked_turn[-1]:.2f}, re-tracked {seen_turn[-1]:.2f}")
    assert abs(abs(asked_turn[-1]) - YAW_DEG) < 0.5  # the request really is 20 degrees
    assert abs(abs(seen_turn[-1]) - YAW_DEG) <= YAW_TOLERANCE_DEG, f"re-tracked {seen_turn[-1]}"
    np.testing.assert_allclose(seen_turn, asked_turn, atol=YAW_TOLERANCE_DEG)


def _replace(conditioning, **arrays):
    from dataclasses import replace

    return replace(conditioning, **arrays)


@pytest.mark.parametrize("name", ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight"])
def test_the_driving_clips_blinks_and_open_jaw_are_retracked(expressive, name):
    conditioning, _, measured = expressive
    index = conditioning.blendshape_names.index(name)
    asked = conditioning.blendshapes[:, index]
    seen = measured.blendshapes[:, index]
    assert asked.max() - asked.min() > 0.2  # the clip really blinks and opens its jaw
    correlation = np.corrcoef(asked, seen)[0, 1]
    print(f"{name}: correlation {correlation:.3f}")
    assert correlation >= EXPRESSION_CORRELATION, f"{name}: correlation {correlation:.2f}"


def test_camera_only_keeps_the_expression_while_the_view_turns_as_the_path(orbit):
    conditioning, _, measured = orbit
    asked = metrics.requested_head_in_camera(conditioning.c2w, conditioning.head_pose)[:, :3, :3]
    turn = metrics.rotation_angle_deg(asked[:1].repeat(len(asked), 0), asked)
    assert turn.max() > 25.0  # the orbit really turns the view
    error = metrics.rotation_angle_deg(
        metrics.relative_to_first(asked), metrics.relative_to_first(measured.rotations)
    )
    print(f"camera-only: turn {turn.max():.1f} deg, view error max {error.max():.2f} deg")
    assert error.max() <= VIEW_TOLERANCE_DEG, f"view error {np.round(error, 1)}"
    names = conditioning.blendshape_names
    for name, bound in FROZEN_BLENDSHAPES.items():
        series = measured.blendshapes[:, names.index(name)]
        drift = np.abs(series - series[0]).max()
        print(f"camera-only: {name} drifts {drift:.3f} (bound {bound})")
        assert drift <= bound, f"{name} moved by {drift:.2f} in camera-only"
    # The portrait's smile stays a smile (MediaPipe reads less of it from the side the mouth
    # turns away on: seen 0.87 frontal, 0.57 at 30 degrees round).
    smile = measured.blendshapes[:, names.index("mouthSmileLeft")]
    assert smile[0] > 0.6 and smile.min() >= 0.5 * smile[0], f"smile {np.round(smile, 2)}"


def _distance_outside(mask, points):
    """How far (px) each point (P, 2) lies outside the mask (0 inside)."""
    import cv2

    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    pixels = np.clip(np.floor(points).astype(int), 0, np.array(mask.shape[::-1]) - 1)
    return distance[pixels[:, 1], pixels[:, 0]]


@pytest.mark.parametrize("which", ["driven", "orbit"])
def test_the_results_face_lies_inside_the_normal_maps_mask(which, request):
    """Every re-tracked face point of every frame lies inside the normal maps' mask of that
    frame, up to the margin the portrait's own face needs in its own template's render (the
    template has the portrait's proportions, not its exact outline: seen 4-6 px at 256 on the
    jaw's contour) and 2 px of tracking."""
    conditioning, _, measured = request.getfixturevalue(which)
    template = conditioning.head_template
    own = render_head(
        template,
        np.eye(4)[None],
        conditioning.K[:1],
        conditioning.reference_c2w[None],
        SIZE,
        SIZE,
        depth=False,
    )
    margin = _distance_outside(own.mask[0], conditioning.source_landmarks[:468, :2]).max() + 2.0
    assert margin < 0.04 * SIZE  # the template does fit the portrait's face
    mask = conditioning.mask
    outside = np.stack(
        [_distance_outside(mask[f], measured.landmarks[f, :468, :2]) for f in range(len(mask))]
    )
    print(f"{which}: {outside.max():.2f} px outside the mask (margin {margin:.2f})")
    assert outside.max() <= margin, f"{outside.max():.1f} px outside (margin {margin:.1f})"


def test_a_photos_scene_is_built_once_and_each_request_keeps_its_own_expression(expressive, driven):
    """The web service keeps each photo's scene (GrabCut, the inpainting, the colour solve):
    a second request with the same photo and another clip reuses it, and its frames are the
    ones a fresh scene gives, its own clip's expression and head included."""
    scenes = SceneCache()
    np.testing.assert_array_equal(render_geometry(expressive[0], scenes=scenes), expressive[1])
    assert scenes.hits == 0
    np.testing.assert_array_equal(render_geometry(driven[0], scenes=scenes), driven[1])
    assert scenes.hits == 1


def test_the_engine_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, factorportrait.engines.geometry; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
