"""Evaluation metrics with known answers: a video against itself is perfect; a face video turned
by known angles gives those angles back; a re-rendered video of a known camera trajectory
recovers that trajectory; a still video asked for known camera / head translations and for an
expression 0.05 away from its own gives those amounts back as errors. (More known non-zero
answers, by hand, in test_evaluation_known_answers.py.)"""

import json

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from factorportrait.cli import main
from factorportrait.errors import InputError
from factorportrait.evaluation import metrics
from factorportrait.evaluation.harness import evaluate, find_samples
from factorportrait.io import write_video
from factorportrait.io.media import read_image, read_video
from factorportrait.viewpoint import intrinsics_from_fov, orbit_c2w

ANGLES = np.array([0.0, 4.0, 8.0, 12.0, 16.0, 12.0, 8.0, 4.0, 0.0])
SLIDE = np.array([0.0, 1.5, 3.0, 4.5, 6.0, 4.5, 3.0, 1.5, -1.5])  # cm
RISE = np.array([0.0, 0.0, 2.0, 4.0, 6.0, 8.0, 6.0, 4.0, 2.0])  # cm


def test_pure_metrics_recover_known_rotations():
    rotations = Rotation.from_euler("z", ANGLES[:, None], degrees=True).as_matrix()
    np.testing.assert_allclose(metrics.rotation_angle_deg(rotations, rotations), 0, atol=1e-6)
    np.testing.assert_allclose(
        metrics.rotation_angle_deg(np.eye(3)[None].repeat(9, 0), rotations), ANGLES, atol=1e-6
    )
    # Cameras implied by a tracked head seen rolling, with the head asked to stay still: the
    # camera rolled the other way, by the same angles.
    head_pose = np.tile(np.eye(4), (9, 1, 1))
    requested = orbit_c2w(0, 0, 60, ANGLES)
    head_in_camera = np.linalg.inv(requested) @ head_pose
    implied = metrics.implied_cameras(
        head_pose, head_in_camera[:, :3, :3], head_in_camera[:, :3, 3]
    )
    errors = metrics.camera_error(requested, implied)
    np.testing.assert_allclose(errors["rotation_deg"], 0, atol=1e-6)
    np.testing.assert_allclose(errors["translation_rel"], 0, atol=1e-9)
    still = metrics.camera_error(orbit_c2w(0, 0, 60, np.zeros(9)), implied)
    np.testing.assert_allclose(still["rotation_deg"], ANGLES, atol=1e-6)


def test_psnr_ssim_and_identity_of_a_video_with_itself():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    assert np.isinf(metrics.psnr(video, video)).all()
    np.testing.assert_allclose(metrics.ssim(video, video), 1.0)
    assert (metrics.psnr(video, 255 - video) < 10).all()
    landmarks = rng.normal(size=(1, 478, 3)) * 30
    turned = landmarks @ Rotation.from_euler("z", 20, degrees=True).as_matrix().T * 1.3 + 5
    np.testing.assert_allclose(
        metrics.identity_drift(np.concatenate([landmarks, turned])), 0, atol=1e-9
    )


def _face_frames(pyfeat, angles):
    """A real face turned in the image plane by each angle (anticlockwise, degrees): what a
    camera rolling by that angle about its optical axis sees."""
    photo = read_image(pyfeat / "single_face.jpg")[:, :560]
    photo = cv2.resize(photo, (256, 256), interpolation=cv2.INTER_AREA)
    return np.stack(
        [
            cv2.warpAffine(
                photo,
                cv2.getRotationMatrix2D((128, 128), a, 1.0),
                (256, 256),
                borderMode=cv2.BORDER_REFLECT,
            )
            for a in angles
        ]
    )


def _save_sample(folder, name, frames, c2w, head_pose, blendshapes, ground_truth=None):
    write_video(folder / f"{name}.mp4", frames, 8)
    np.savez(
        folder / f"{name}.conditioning.npz",
        c2w=c2w,
        head_pose=head_pose,
        blendshapes=blendshapes,
        K=intrinsics_from_fov(np.full(len(c2w), 30.0), 256, 256),
    )
    if ground_truth is not None:
        write_video(folder / f"{name}.ground_truth.mp4", ground_truth, 8)


@pytest.fixture(scope="module")
def report(pyfeat, tracker, landmarker_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("results")
    still = np.tile(np.eye(4), (9, 1, 1))
    # 1. A still face video, asked for exactly what it shows (its own tracked blendshapes),
    #    with itself as ground truth.
    write_video(folder / "itself.mp4", _face_frames(pyfeat, np.zeros(9)), 8)
    decoded = read_video(folder / "itself.mp4")
    own = tracker.track_frames(decoded.frames, decoded.times)
    np.savez(
        folder / "itself.conditioning.npz",
        c2w=orbit_c2w(0, 0, 60, np.zeros(9)),
        head_pose=still,
        blendshapes=np.stack([o.blendshapes for o in own]),
    )
    (folder / "itself.ground_truth.mp4").write_bytes((folder / "itself.mp4").read_bytes())
    # 2. A video of a known camera roll, with that roll as the requested trajectory ...
    rolled = _face_frames(pyfeat, ANGLES)
    _save_sample(
        folder, "known-roll", rolled, orbit_c2w(0, 0, 60, ANGLES), still, np.zeros((9, 52))
    )
    # 3. ... and the same video against a request for no motion at all.
    _save_sample(
        folder, "asked-still", rolled, orbit_c2w(0, 0, 60, np.zeros(9)), still, np.zeros((9, 52))
    )
    # 4. The still face video, asked for a camera sliding sideways (along its own x axis) by
    #    SLIDE cm and for its own expression with 13 coefficients moved by 0.2 ...
    c2w = orbit_c2w(0, 0, 60, np.zeros(9))
    c2w[:, :3, 3] += SLIDE[:, None] * c2w[:, :3, 0]
    (folder / "camera-slides.mp4").write_bytes((folder / "itself.mp4").read_bytes())
    asked = np.stack([o.blendshapes for o in own]).astype(np.float64)
    asked[:, :13] = np.where(asked[:, :13] > 0.5, asked[:, :13] - 0.2, asked[:, :13] + 0.2)
    np.savez(folder / "camera-slides.conditioning.npz", c2w=c2w, head_pose=still, blendshapes=asked)
    # 5. ... and for a head rising (world +y) by RISE cm in front of a still camera.
    risen = still.copy()
    risen[:, 1, 3] = RISE
    (folder / "head-rises.mp4").write_bytes((folder / "itself.mp4").read_bytes())
    np.savez(
        folder / "head-rises.conditioning.npz",
        c2w=orbit_c2w(0, 0, 60, np.zeros(9)),
        head_pose=risen,
        blendshapes=asked,
    )
    out = tmp_path_factory.mktemp("report") / "out"
    result = evaluate(folder, out, landmarker_path)
    result["_out"] = out  # for the file checks below
    result["_distance"] = float(np.linalg.norm(own[0].head_to_camera[:3, 3]))  # tracked, cm
    return result


def _sample(report, name):
    return next(s for s in report["samples"] if s["name"] == name)


def test_a_video_against_itself_scores_perfect(report):
    itself = _sample(report, "itself")
    assert itself["face_tracked_fraction"] == 1.0
    summary = itself["summary"]
    assert summary["psnr_db"] == 100.0 and summary["ssim"] == pytest.approx(1.0)
    assert summary["expression_l1"] < 1e-6
    assert summary["head_rotation_deg"] < 1.0 and summary["camera_rotation_deg"] < 1.0
    assert summary["identity_drift"] < 0.02
    assert "skipped" in summary["lpips"]


def test_known_camera_trajectory_is_recovered(report):
    known = _sample(report, "known-roll")["series"]["camera_rotation_deg"]
    assert max(known) < 2.0  # the implied camera moves as the requested one did


def test_rotation_by_known_angles_is_measured_back(report):
    asked_still = _sample(report, "asked-still")["series"]
    np.testing.assert_allclose(asked_still["camera_rotation_deg"], ANGLES, atol=2.0)
    np.testing.assert_allclose(asked_still["head_rotation_deg"], ANGLES, atol=2.0)


def test_requested_motion_the_video_lacks_is_measured_as_translation_error(report):
    # The video is still; what was asked moved by known amounts: the errors are those amounts.
    slides = _sample(report, "camera-slides")["series"]
    rises = _sample(report, "head-rises")["series"]
    # A camera sliding by s (60 cm away) sees the head slide by s: s cm, and s / 60 distances.
    np.testing.assert_allclose(slides["head_translation_cm"], np.abs(SLIDE), atol=0.1)
    np.testing.assert_allclose(slides["camera_translation_rel"], np.abs(SLIDE) / 60, atol=0.002)
    np.testing.assert_allclose(rises["head_translation_cm"], RISE, atol=0.1)
    # A head asked to rise by r but seen still implies a camera that rose by r, in units of
    # the distance at which the tracker sees the face (what the requested camera did: nothing).
    np.testing.assert_allclose(
        rises["camera_translation_rel"], RISE / report["_distance"], atol=0.002
    )
    np.testing.assert_allclose(slides["head_rotation_deg"], 0, atol=0.5)
    np.testing.assert_allclose(rises["camera_rotation_deg"], 0, atol=0.5)


def test_an_expression_other_than_the_one_shown_is_measured(report):
    # 13 of 52 coefficients asked 0.2 away from what the (unchanged) video shows: 13 * 0.2 / 52.
    for name in ("camera-slides", "head-rises"):
        np.testing.assert_allclose(
            _sample(report, name)["series"]["expression_l1"], 0.05, atol=1e-6
        )


def test_report_files(report):
    out = report["_out"]
    saved = json.loads((out / "report.json").read_text())
    assert saved["count"] == 5 and "camera_rotation_deg" in saved["aggregate"]
    page = (out / "report.html").read_text()
    assert "plotly" in page and "known-roll" in page and "camera rotation error" in page


def test_evaluate_command_and_its_errors(tmp_path, landmarker_path, capsys):
    with pytest.raises(InputError, match="no video with a matching .conditioning.npz"):
        find_samples(tmp_path)
    manifest = tmp_path / "runs.jsonl"
    manifest.write_text(json.dumps({"video": "missing.mp4"}) + "\n")
    with pytest.raises(InputError, match="runs.jsonl line 1: needs video and conditioning"):
        find_samples(manifest)
    assert (
        main(["evaluate", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "neither a folder nor a manifest" in capsys.readouterr().err


def test_a_face_no_camera_can_place_skips_that_videos_pose_metrics_only(
    pyfeat, landmarker_path, tmp_path
):
    """A video whose conditioning's camera (here 176° wide) puts its face 5 cm away or nearer:
    its pose metrics are skipped with the reason and its other metrics measured, the
    evaluation goes on to the other videos (it used to stop the whole run), and the means say
    how many videos they are over."""
    frames, still = _face_frames(pyfeat, np.zeros(9)), np.tile(np.eye(4), (9, 1, 1))
    c2w, expression = orbit_c2w(0, 0, 60, np.zeros(9)), np.zeros((9, 52))
    _save_sample(tmp_path, "placed", frames, c2w, still, expression)
    _save_sample(tmp_path, "too-wide", frames, c2w, still, expression)
    with np.load(tmp_path / "too-wide.conditioning.npz") as data:
        arrays = dict(data)
    np.savez(
        tmp_path / "too-wide.conditioning.npz",
        **{**arrays, "K": intrinsics_from_fov(np.full(9, 176.0), 256, 256)},
    )
    out = tmp_path / "report"
    report = evaluate(tmp_path, out, landmarker_path)
    placed, too_wide = _sample(report, "placed"), _sample(report, "too-wide")
    assert "head_rotation_deg" in placed["summary"]
    assert "head_rotation_deg" not in too_wide["summary"]
    assert any("no pose metrics" in n and "too close" in n for n in too_wide["notes"])
    for measured in ("identity_drift", "expression_l1", "landmark_jitter_px"):
        assert measured in too_wide["summary"]
    # The means say how many videos they are over: the pose errors' one, the rest both.
    assert report["measured"]["head_rotation_deg"] == 1
    assert report["measured"]["identity_drift"] == 2
    assert "(1 of 2)" in (out / "report.html").read_text()
