"""Training samples with recorded cameras and multi-view groups: camera files, the unit scale,
camera motion that agrees with the tracked head, references from another camera, the C1 filter.

Moving cameras are synthesised from real pictures where the geometry is exact or nearly so:
a camera rolling about its viewing axis turns the picture about the face; a camera dollying
towards a face scales the picture about the face (nearly exact: a face is not flat)."""

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.spatial.transform import Rotation

from factorportrait.conditioning import ConditioningSettings
from factorportrait.errors import InputError
from factorportrait.io import write_video
from factorportrait.io.media import read_image, read_video
from factorportrait.pipelines.checkpoints import make_tiny_checkpoint
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.training.loop import PreparedSamples
from factorportrait.training.prepare import prepare, read_manifest
from factorportrait.training.samples import (
    build_sample_conditioning,
    estimate_cm_per_unit,
    read_camera_file,
)
from factorportrait.viewpoint import invert_rigid

FACE_CENTRE = (240, 170)  # in the 512x512 example portrait


def _warped(images, centre, angles_deg, scales, half=True):
    """Each picture (one image, or one per frame) turned and scaled about ``centre``."""
    if images.ndim == 3:
        images = np.repeat(images[None], len(angles_deg), axis=0)
    frames = [
        cv2.warpAffine(
            image,
            cv2.getRotationMatrix2D(centre, float(a), float(s)),
            (image.shape[1], image.shape[0]),
            borderMode=cv2.BORDER_REFLECT,
        )
        for image, a, s in zip(images, angles_deg, scales, strict=True)
    ]
    return np.stack([f[::2, ::2] if half else f for f in frames]).copy()


def _roll_cameras(angles_deg):
    """A camera turning clockwise about its viewing axis by these angles (OpenCV axes)."""
    c2w = np.tile(np.eye(4), (len(angles_deg), 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler(
        "z", np.asarray(angles_deg)[:, None], degrees=True
    ).as_matrix()
    return c2w


def _head_turn_deg(head_pose):
    first = Rotation.from_matrix(head_pose[0, :3, :3])
    return np.degrees((Rotation.from_matrix(head_pose[:, :3, :3]) * first.inv()).magnitude())


@pytest.fixture(scope="module")
def photo():
    return read_image("assets/example_portrait.jpg")


def test_scale_estimate_recovers_a_known_unit():
    rng = np.random.default_rng(0)
    true_cm_per_unit = 37.5
    cameras = np.tile(np.eye(4), (12, 1, 1))
    cameras[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.2, (12, 3))).as_matrix()
    cameras[:, :3, 3] = rng.normal(0, 0.3, (12, 3))  # data units
    motion = invert_rigid(cameras[0]) @ cameras
    # A still head at (1, -2, 60) cm in the first camera, seen from each camera.
    head_in_first = np.eye(4)
    head_in_first[:3, 3] = [1.0, -2.0, 60.0]
    motion_cm = motion.copy()
    motion_cm[:, :3, 3] *= true_cm_per_unit
    head_to_camera = invert_rigid(motion_cm) @ head_in_first
    scale, residual = estimate_cm_per_unit(motion, head_to_camera)
    assert scale == pytest.approx(true_cm_per_unit, rel=1e-9) and residual < 1e-9
    # A camera that only turns needs no scale.
    motion[:, :3, 3] = 0
    assert estimate_cm_per_unit(motion, head_to_camera) == (None, 0.0)


def test_camera_file_checks_and_conventions(tmp_path):
    c2w = _roll_cameras([0, 5, 10])
    c2w[:, :3, 3] = [[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]
    path = tmp_path / "cams.json"
    path.write_text(json.dumps({"c2w": c2w.tolist()}))
    cameras = read_camera_file(path, 3)
    assert np.allclose(cameras.c2w, c2w) and cameras.cm_per_unit is None
    # The same cameras written in OpenGL axes (y up, z back) read back identical.
    gl = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
    path.write_text(json.dumps({"convention": "opengl", "cm_per_unit": 100, "c2w": gl.tolist()}))
    cameras = read_camera_file(path, 3)
    assert np.allclose(cameras.c2w, c2w) and cameras.cm_per_unit == 100.0
    for content, frames, message in [
        ({"c2w": c2w.tolist()}, 4, "3 cameras for a video of 4 frames"),
        ({"c2w": (c2w * 2).tolist()}, 3, "must be rotations"),
        ({"c2w": c2w[:, :3].tolist()}, 3, "list of finite 4x4 matrices"),
        ({"c2w": c2w.tolist(), "convention": "blender"}, 3, "opencv or opengl"),
        ({"c2w": c2w.tolist(), "cm_per_unit": -1}, 3, "positive number"),
        ({"c2w": c2w.tolist(), "fov": 30}, 3, "unknown field"),
        ({"poses": []}, 3, 'needs a "c2w"'),
    ]:
        path.write_text(json.dumps(content))
        with pytest.raises(InputError, match=message):
            read_camera_file(path, frames)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        read_camera_file(path, 3)


def test_a_recorded_camera_roll_leaves_the_head_still(photo, tracker):
    """The picture turns by up to 12 degrees because the camera rolls: with the recorded
    cameras the head stays still in the world; with the cameras' sign flipped it would turn
    twice as far, and with none at all (a static camera) the head would take all of it."""
    angles = 12 * np.sin(np.arange(9) * np.pi / 16)
    frames = _warped(photo, FACE_CENTRE, angles, np.ones(9))
    settings = ConditioningSettings(frames=9, fps=8.0, height=64, width=64)
    turns = {}
    for name, cameras in [
        ("recorded", _roll_cameras(angles)),
        ("flipped", _roll_cameras(-angles)),
        ("static", None),
    ]:
        sample = build_sample_conditioning(
            frames[0], frames, settings=settings, tracker=tracker, cameras=cameras
        )
        turns[name] = _head_turn_deg(sample.conditioning.head_pose).max()
        if name == "recorded":
            recorded = sample
    assert turns["recorded"] < 2.5, turns
    assert turns["static"] == pytest.approx(12, abs=2.5), turns
    assert turns["flipped"] == pytest.approx(24, abs=3.5), turns
    cond = recorded.conditioning
    assert recorded.camera_change and cond.mode == "all-dynamic"
    assert cond.report.cameras.camera_turn_deg == pytest.approx(12, abs=1e-6)
    # The normal renders sit on the target's face, in the target's framing.
    assert cond.report.reprojection_px < 2.0
    assert recorded.target_frames.shape == (9, 64, 64, 3)
    # Rays see the roll: frame 0 is the identity map, the last frame is not.
    assert not np.allclose(cond.rays[0], cond.rays[-1], atol=1e-3)


def test_a_dolly_gets_its_unit_from_the_face_distance(photo, tracker):
    """Cameras moving towards the face in units of the face's distance: the estimated scale
    is that distance in cm, and stating the same cameras in a 1000x smaller unit changes the
    scale by 1000 and the conditions not at all."""
    zoom = 1 + 0.3 * np.sin(np.arange(9) * np.pi / 16)
    frames = _warped(photo, FACE_CENTRE, np.zeros(9), zoom)
    cameras = np.tile(np.eye(4), (9, 1, 1))
    cameras[:, 2, 3] = 1 - 1 / zoom  # forward, as a fraction of the face's distance
    settings = ConditioningSettings(frames=9, fps=8.0, height=64, width=64)
    sample = build_sample_conditioning(
        frames[0], frames, settings=settings, tracker=tracker, cameras=cameras
    )
    cond = sample.conditioning
    face_in_first = invert_rigid(cond.c2w[0]) @ cond.head_pose[0]
    from factorportrait.head_pose.canonical import load_canonical_face

    face = load_canonical_face(str(tracker.model_path)).vertices
    face_depth = (face @ face_in_first[:3, :3].T + face_in_first[:3, 3])[:, 2].mean()
    assert cond.report.cameras.cm_per_unit_source == "estimated"
    assert cond.report.cameras.cm_per_unit == pytest.approx(face_depth, rel=0.1)
    assert cond.report.cameras.head_centre_drift_cm < 3.0 and sample.camera_change
    millimetres = cameras.copy()
    millimetres[:, :3, 3] *= 1000
    again = build_sample_conditioning(
        frames[0], frames, settings=settings, tracker=tracker, cameras=millimetres
    )
    assert again.conditioning.report.cameras.cm_per_unit == pytest.approx(
        cond.report.cameras.cm_per_unit / 1000, rel=1e-9
    )
    assert np.allclose(again.conditioning.rays, cond.rays, atol=1e-5)
    # A stated unit is used as given: twice the estimate moves the camera twice as far.
    stated = build_sample_conditioning(
        frames[0],
        frames,
        settings=settings,
        tracker=tracker,
        cameras=cameras,
        cm_per_unit=2 * cond.report.cameras.cm_per_unit,
    )
    # Cameras that move away while the face grows contradict the tracking: a clear error.
    with pytest.raises(InputError, match="the camera motion and the tracked head disagree"):
        build_sample_conditioning(
            frames[0], frames, settings=settings, tracker=tracker, cameras=invert_rigid(cameras)
        )
    assert stated.conditioning.report.cameras.cm_per_unit_source == "file"
    assert np.allclose(
        stated.conditioning.c2w[-1, 2, 3] - stated.conditioning.c2w[0, 2, 3],
        2 * (cond.c2w[-1, 2, 3] - cond.c2w[0, 2, 3]),
        rtol=1e-6,
    )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, photo, pyfeat, landmarker_path):
    """A manifest of: a still camera; a rolling camera with its cameras file; two clips of
    one moment from two cameras (a group); a real expressive clip filmed by a rolling camera
    (expression and camera both change: what C1 leaves out)."""
    root = tmp_path_factory.mktemp("cameras")
    rock = 3 * np.sin(np.arange(24) / 4)
    write_video(root / "still.mp4", _warped(photo, FACE_CENTRE, rock, np.ones(24)), 8)
    roll = 12 * np.sin(np.arange(24) * np.pi / 16)
    write_video(root / "rolling.mp4", _warped(photo, FACE_CENTRE, roll, np.ones(24)), 8)
    (root / "rolling.json").write_text(json.dumps({"c2w": _roll_cameras(roll).tolist()}))
    # The group: the same rocking head seen by a second camera rolled by 20 degrees.
    write_video(root / "side.mp4", _warped(photo, FACE_CENTRE, rock + 20, np.ones(24)), 8)
    talking = read_video(pyfeat / "WolfgangLanger_Pexels.mp4", until_s=11.5)
    picks = np.abs(talking.times[None] - np.arange(64)[:, None] / 8 - 3.0).argmin(axis=1)
    talk_roll = 10 * np.sin(np.arange(64) * np.pi / 16)
    box_centre = (450, 190)  # his face, in the 640x360 clip
    write_video(
        root / "talking.mp4",
        _warped(talking.frames[picks], box_centre, talk_roll, np.ones(64), half=False),
        8,
    )
    (root / "talking.json").write_text(json.dumps({"c2w": _roll_cameras(talk_roll).tolist()}))
    lines = [
        {"id": "still", "video": "still.mp4"},
        {"id": "rolling", "video": "rolling.mp4", "cameras": "rolling.json"},
        {"id": "front", "video": "still.mp4", "group": "moment", "split": "val"},
        {"id": "side", "video": "side.mp4", "group": "moment", "split": "val"},
        {"id": "talking", "video": "talking.mp4", "cameras": "talking.json"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    make_tiny_checkpoint(root / "tiny", seed=0)
    counts = prepare(
        root / "manifest.jsonl",
        root / "data",
        load_pipeline(root / "tiny", device="cpu"),
        frames=9,
        size=32,
        fps=8.0,
        landmarker=landmarker_path,
    )
    index = {
        row["id"]: row
        for row in map(json.loads, (root / "data" / "index.jsonl").read_text().splitlines())
    }
    return root, counts, index


def test_prepare_takes_cameras_and_groups(prepared):
    root, counts, index = prepared
    assert counts == {"prepared": 5, "skipped": 0, "samples": 5}, (
        (root / "data" / "skipped.jsonl").read_text()
        if (root / "data" / "skipped.jsonl").exists()
        else counts
    )
    assert index["still"]["mode"] == "frontal-dynamic"
    assert index["still"]["has_camera_change"] == "false"
    assert index["rolling"]["mode"] == "all-dynamic"
    assert index["rolling"]["has_camera_change"] == "true"
    assert float(index["rolling"]["camera_turn_deg"]) == pytest.approx(12, abs=0.01)
    # Each clip of the group takes its reference from the other camera.
    assert index["front"]["reference_clip"] == "side" and index["side"]["reference_clip"] == "front"
    assert index["front"]["mode"] == index["side"]["mode"] == "novel-dynamic"
    samples = {
        name: load_file(str(root / "data" / "samples" / f"{name}.safetensors"))
        for name in ("still", "front", "side")
    }
    # "side" is referenced by the front camera's last frame: the one "still" uses for itself.
    assert torch.equal(samples["side"]["reference_latents"], samples["still"]["reference_latents"])
    assert not torch.equal(
        samples["front"]["reference_latents"], samples["still"]["reference_latents"]
    )
    # ...while its target and driving signals are its own clip's, identical to "still"'s.
    assert torch.equal(samples["front"]["target_latents"], samples["still"]["target_latents"])


def test_the_c1_filter_leaves_out_clips_where_expression_and_camera_both_change(prepared):
    root, _, index = prepared
    assert index["talking"]["has_expression_change"] == "true"
    assert index["talking"]["has_camera_change"] == "true"
    assert index["still"]["has_expression_change"] == "false"
    assert index["rolling"]["has_expression_change"] == "false"
    everything = PreparedSamples(root / "data", "train")
    filtered = PreparedSamples(root / "data", "train", exclude_combined=True)
    assert {f.stem for f in everything.files} == {"still", "rolling", "talking"}
    assert {f.stem for f in filtered.files} == {"still", "rolling"}
    # The threshold is the train config's: raised above the talking clip's range, it stays.
    lenient = PreparedSamples(
        root / "data",
        "train",
        exclude_combined=True,
        expression_change_threshold=float(index["talking"]["expression_change"]) + 0.01,
    )
    assert len(lenient) == 3


def test_a_group_may_not_span_splits(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"id": "a", "video": "a.mp4", "group": "g"}\n'
        '{"id": "b", "video": "b.mp4", "group": "g", "split": "val"}\n'
    )
    with pytest.raises(InputError, match="group 'g' mixes train and val"):
        read_manifest(manifest)


def test_windows_spread_samples_over_a_clip(prepared, landmarker_path, tmp_path):
    """Several non-overlapping windows per clip: the first is the one-window sample itself,
    each takes the clip's far end as its reference, and each uses its own frames' cameras."""
    root, _, index = prepared
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        json.dumps(
            {
                "id": "rolling",
                "video": str(root / "rolling.mp4"),
                "cameras": str(root / "rolling.json"),
            }
        )
        + "\n"
    )
    counts = prepare(
        manifest,
        tmp_path / "data",
        load_pipeline(root / "tiny", device="cpu"),
        frames=9,
        size=32,
        fps=8.0,
        landmarker=landmarker_path,
        windows=5,
    )
    # 24 frames at 8 fps (2.875 s) hold two 9-frame windows a frame apart, not five.
    assert counts == {"prepared": 2, "skipped": 0, "samples": 2}
    rows = [
        json.loads(line) for line in (tmp_path / "data" / "index.jsonl").read_text().splitlines()
    ]
    first, second = sorted(rows, key=lambda r: r["id"])
    assert (first["id"], second["id"]) == ("rolling-w0", "rolling-w1")
    assert first["clip"] == second["clip"] == "rolling"
    assert float(first["window_start_s"]) == 0 and float(second["window_start_s"]) == 1.875
    assert float(first["reference_time_s"]) == 2.875 and float(second["reference_time_s"]) == 0
    one = load_file(str(root / "data" / "samples" / "rolling.safetensors"))
    w0 = load_file(str(tmp_path / "data" / "samples" / "rolling-w0.safetensors"))
    assert all(torch.equal(one[key], w0[key]) for key in one)
    # The second window's cameras are frames 15-23's: the roll it sees is theirs.
    roll = 12 * np.sin(np.arange(24) * np.pi / 16)
    expected = np.abs(roll[15:24] - roll[15]).max()
    assert float(second["camera_turn_deg"]) == pytest.approx(expected, abs=0.01)
    assert float(second["camera_turn_deg"]) != pytest.approx(float(first["camera_turn_deg"]))
