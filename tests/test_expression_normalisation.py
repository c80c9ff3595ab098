"""The expression encoder normalises its input features by fixed per-feature statistics (issue
27): measured by ``prepare`` over the training data, put into the encoder's config by
``train``, carried by every checkpoint, applied by the encoder's forward in training and
inference alike. Not a per-sample LayerNorm, which is blind to scale: an expression and the same
expression three times as strong got one code. And C3's landmark codes in the head's own frame
(issue 27, "C3 that carries expression"), at the end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from factorportrait.io import write_video
from factorportrait.io.media import read_image
from factorportrait.models import FactorPortraitExpressionEncoder, aggregate_codes
from factorportrait.models.expression_encoder import STD_FLOOR_FRACTION
from factorportrait.pipelines.checkpoints import make_tiny_checkpoint, tiny_pipeline
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.training.config import TrainConfig
from factorportrait.training.expression_stats import STATS_FILE
from factorportrait.training.loop import expression_codes, train
from factorportrait.training.prepare import prepare

SIZES = {"blendshapes": 52, "landmarks": 956}


def _blendshapes(value: float = 0.3) -> torch.Tensor:
    """The toy world's expression: jawOpen and both eye blinks at ``value`` (1 frame)."""
    features = torch.zeros(1, 1, 52)
    features[..., [9, 10, 25]] = value
    return features


def _statistics(size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(size, generator=g), 0.5 + 0.5 * torch.rand(size, generator=g)


@torch.no_grad()
def test_an_expression_three_times_as_strong_gets_another_code():
    """Seen failing on the encoder whose head began with a LayerNorm (relative difference
    8.3e-4 there); with measured statistics too."""
    torch.manual_seed(0)
    encoder = FactorPortraitExpressionEncoder(code_type="blendshapes", code_dim=32).eval()
    for _ in ("fresh: identity", "with statistics"):
        weak, strong = encoder(_blendshapes(0.3)), encoder(3 * _blendshapes(0.3))
        relative = float((strong - weak).norm() / weak.norm())
        assert relative > 0.1, f"x and 3x give nearly one code: relative difference {relative:.2e}"
        encoder.set_feature_statistics(torch.full((52,), 0.2), torch.full((52,), 0.3))


@torch.no_grad()
def test_the_statistics_normalise_and_are_floored():
    """(x - mean) / std per feature, in float32 whatever the encoder's dtype; a std far below
    the features' typical spread is raised to a tenth of it (constant features are not blown
    up); a fresh encoder is the identity."""
    encoder = FactorPortraitExpressionEncoder(code_type="blendshapes", code_dim=8)
    x = torch.rand(2, 3, 52)
    torch.testing.assert_close(encoder.normalised_features(x), x, rtol=0, atol=0)
    mean, std = _statistics(52)
    std[:5] = 0.0  # never moved in the training data
    encoder.set_feature_statistics(mean, std)
    rms = float(std.square().mean().sqrt())
    floored = std.clamp_min(STD_FLOOR_FRACTION * rms)
    assert torch.tensor(encoder.config.feature_std).tolist() == pytest.approx(floored.tolist())
    torch.testing.assert_close(encoder.normalised_features(x), (x - mean) / floored)
    encoder.to(torch.bfloat16)
    assert encoder.head[0].mean.dtype == encoder.head[0].std.dtype == torch.float32
    assert encoder(x).dtype == torch.bfloat16


@pytest.mark.parametrize("code_type", ["blendshapes", "landmarks", "image"])
@torch.no_grad()
def test_statistics_round_trip_through_the_config(tmp_path, code_type):
    """set -> save_pretrained -> from_pretrained: the same statistics in the config, the same
    codes; the state dict holds no statistics (the config does)."""
    encoder = tiny_pipeline(0, code_type=code_type).expression_encoder.eval()
    mean, std = _statistics(encoder.in_features)
    encoder.set_feature_statistics(mean, std)
    encoder.save_pretrained(tmp_path / "encoder")
    saved = json.loads((tmp_path / "encoder" / "config.json").read_text())
    assert saved["input_norm"] == "fixed"
    assert saved["feature_mean"] == pytest.approx(mean.tolist())
    assert saved["feature_std"] == pytest.approx(std.tolist())
    assert not any(key.startswith("head.0") for key in encoder.state_dict())
    loaded = FactorPortraitExpressionEncoder.from_pretrained(tmp_path / "encoder").eval()
    assert loaded.config.feature_mean == encoder.config.feature_mean
    assert loaded.config.feature_std == encoder.config.feature_std
    shape = {"image": (1, 2, 3, 28, 28)}.get(code_type, (1, 2, encoder.in_features))
    x = torch.rand(*shape)
    torch.testing.assert_close(loaded(x), encoder(x), rtol=0, atol=0)


@torch.no_grad()
def test_an_encoder_saved_before_the_statistics_keeps_its_layernorm(tmp_path):
    """A config without input_norm (saved before it existed) loads as the LayerNorm head it
    was trained with, its LayerNorm weights and all."""
    torch.manual_seed(0)
    old = FactorPortraitExpressionEncoder(
        code_type="blendshapes", code_dim=8, input_norm="layernorm"
    )
    old.head[0].weight.data.uniform_(0.5, 2.0)
    old.save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "config.json"
    config = json.loads(config_file.read_text())
    for key in ("input_norm", "feature_mean", "feature_std"):
        config.pop(key)
    config_file.write_text(json.dumps(config))
    loaded = FactorPortraitExpressionEncoder.from_pretrained(tmp_path / "old")
    assert loaded.config.input_norm == "layernorm"
    assert isinstance(loaded.head[0], torch.nn.LayerNorm)
    x = torch.rand(1, 3, 52)
    torch.testing.assert_close(loaded(x), old(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="LayerNorm"):
        loaded.set_feature_statistics(*_statistics(52))


def _conditioning(frames=5, size=32, seed=0):
    """A synthetic Conditioning, every field random (as test_pipeline makes them)."""
    from factorportrait.conditioning import Conditioning

    rng = np.random.default_rng(seed)
    return Conditioning(
        mode="camera-only",
        fps=16.0,
        reference=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        normal_maps=rng.uniform(-1, 1, (frames, size, size, 3)).astype(np.float32),
        normal_mask=np.ones((frames, size, size), bool),
        ray_maps=rng.normal(size=(frames, 6, size, size)).astype(np.float32),
        K=np.eye(3)[None].repeat(frames, 0),
        c2w=np.eye(4)[None].repeat(frames, 0),
        head_pose=np.eye(4)[None].repeat(frames, 0),
        blendshapes=rng.uniform(0, 1, (frames, 52)),
        blendshape_names=[],
        crops=rng.integers(0, 255, (frames, 48, 48, 3), dtype=np.uint8),
        crop_landmarks=rng.uniform(0, 224, (frames, 478, 2)),
        source_landmarks=np.zeros((478, 3)),
        face_pixels=np.zeros((frames, 468, 2)),
    )


@pytest.mark.parametrize("code_type", ["blendshapes", "landmarks", "image"])
@torch.no_grad()
def test_training_and_inference_normalise_alike(tmp_path, code_type):
    """One conditioning's expression inputs as prepare caches them, through training's codes,
    and as the pipeline reads them, through a generation with the checkpoint saved and loaded
    again: the same codes, and not those of the identity normalisation."""
    pipe = tiny_pipeline(0, code_type=code_type)
    encoder = pipe.expression_encoder
    cond = _conditioning()
    # What prepare caches of it (training.prepare._sample_tensors).
    sample = {
        "blendshapes": torch.from_numpy(cond.blendshapes).float(),
        "crop_landmarks": torch.from_numpy(cond.crop_landmarks).float(),
    }
    if code_type == "image":
        crops = pipe.tensors_from_conditioning(cond, "image")["expression"]
        sample["expression_features"] = encoder.pooled_features(crops)[0].float()
    batch = {k: v[None] for k, v in sample.items()}
    identity = expression_codes(encoder, batch)
    encoder.set_feature_statistics(*_statistics(encoder.in_features))
    trained_codes = expression_codes(encoder, batch)
    assert (trained_codes - identity).abs().max() > 1e-2

    pipe.save_pretrained(tmp_path / "checkpoint", safe_serialization=True)
    loaded = load_pipeline(tmp_path / "checkpoint", device="cpu")
    seen = []
    hook = loaded.expression_encoder.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        loaded(cond, num_inference_steps=1, output_type="latent")
    finally:
        hook.remove()
    assert len(seen) == 1
    torch.testing.assert_close(aggregate_codes(seen[0]), trained_codes, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, landmarker_path):
    """Three tiny clips prepared with the tiny (image-code) checkpoint: two to train, one
    held out; as test_training's workspace makes them."""
    root = tmp_path_factory.mktemp("statistics")
    photo = read_image("assets/example_portrait.jpg")
    lines = []
    for k in range(3):
        frames = [
            cv2.warpAffine(
                photo,
                cv2.getRotationMatrix2D((240, 170), (k + 1) * 3 * np.sin(i / 4), 1.0 + 0.02 * i),
                (512, 512),
                borderMode=cv2.BORDER_REFLECT,
            )[::2, ::2].copy()
            for i in range(24)
        ]
        write_video(root / f"clip{k}.mp4", np.stack(frames), 8)
        lines.append(
            {"id": f"clip{k}", "video": f"clip{k}.mp4", "split": "val" if k == 2 else "train"}
        )
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    make_tiny_checkpoint(root / "tiny", seed=0)
    pipeline = load_pipeline(root / "tiny", device="cpu")
    counts = prepare(
        root / "manifest.jsonl",
        root / "data",
        pipeline,
        frames=5,
        size=32,
        fps=8.0,
        landmarker=landmarker_path,
    )
    assert counts == {"prepared": 3, "skipped": 0, "samples": 3}
    return root


def test_prepare_measures_the_statistics_of_the_training_split(prepared):
    """expression_stats.json: per-feature mean and std (numpy's, ddof=0) over every frame of
    the training samples (not the held-out one), of each cached expression input."""
    data = prepared / "data"
    stats = json.loads((data / STATS_FILE).read_text())
    rows = [json.loads(line) for line in (data / "index.jsonl").read_text().splitlines()]
    files = [data / row["file"] for row in rows if row["split"] == "train"]
    assert stats["samples"] == len(files) == 2
    assert set(stats) == {"samples", "ids_digest", "blendshapes", "landmarks", "image"}
    for kind, field in (
        ("blendshapes", "blendshapes"),
        ("landmarks", "crop_landmarks"),
        ("image", "expression_features"),
    ):
        features = np.concatenate(
            [load_file(str(f))[field].numpy().reshape(5, -1) for f in files]
        ).astype(np.float64)
        assert stats[kind]["frames"] == 10
        np.testing.assert_allclose(stats[kind]["mean"], features.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(stats[kind]["std"], features.std(0), rtol=1e-7, atol=1e-9)
    assert stats["image"]["std"] != pytest.approx([0.0] * len(stats["image"]["std"]))


def test_train_puts_the_statistics_into_the_checkpoints(prepared, tmp_path, capsys):
    """The checkpoint train saves carries prepare's statistics (the std floored) in its
    encoder's config; data prepared before prepare measured them is measured by train."""
    from factorportrait.models.expression_encoder import floored_std

    data = prepared / "data"
    stats = json.loads((data / STATS_FILE).read_text())["image"]
    config = TrainConfig(steps=1, save_every=1, validate_every=100, log_every=1)
    result = train(prepared / "tiny", data, tmp_path / "run", config, cpu=True)
    saved = load_pipeline(result["final_checkpoint"], device="cpu").expression_encoder
    assert saved.config.input_norm == "fixed"
    assert saved.config.feature_mean == pytest.approx(stats["mean"])
    assert saved.config.feature_std == pytest.approx(floored_std(stats["std"]))
    assert "measured by prepare" in capsys.readouterr().out

    # Without the file (data prepared before it existed): measured over the training samples.
    import shutil

    old = tmp_path / "old-data"
    shutil.copytree(data, old)
    (old / STATS_FILE).unlink()
    result = train(prepared / "tiny", old, tmp_path / "run-old", config, cpu=True)
    again = load_pipeline(result["final_checkpoint"], device="cpu").expression_encoder
    assert again.config.feature_mean == pytest.approx(stats["mean"], rel=1e-6, abs=1e-6)
    assert "measured now" in capsys.readouterr().out


# C3's landmark codes: in the head's own frame, so they carry the expression, not the pose.


def _synthetic_face() -> np.ndarray:
    """MediaPipe's canonical face as 478 landmarks (head frame, cm; the 10 iris points at the
    eyes' lid centres)."""
    from factorportrait.head_pose import load_canonical_face

    vertices = load_canonical_face("assets/face_landmarker.task").vertices
    irises = np.repeat(vertices[[159, 386]], 5, axis=0)
    return np.concatenate([vertices, irises])


def _open_mouth(face: np.ndarray, opening_cm: float) -> np.ndarray:
    """The jaw dropped: points below the mouth corners move down, the lower the more (the
    chin by ``opening_cm``)."""
    line = face[[61, 291], 1].mean()
    below = np.clip((line - face[:, 1]) / 6.0, 0, 1) ** 0.5 * (face[:, 1] < line - 0.05)
    return face - np.outer(opening_cm * below, [0.0, 1.0, 0.0])


def _tracked(face, yaw=0.0, pitch=0.0, roll=0.0, shift=(0.0, 0.0), distance=60.0):
    """The face's landmarks as MediaPipe gives them (pixels: x right, y down, z away from the
    camera, z scaled like x at the head's depth), seen by our camera model: 30 degrees over a
    512-pixel frame the face fills about half of (a pinhole: perspective included)."""
    from scipy.spatial.transform import Rotation

    focal, centre = 256 / np.tan(np.radians(15)), 256.0
    rotation = Rotation.from_euler("yxz", [yaw, pitch, roll], degrees=True).as_matrix()
    camera = (face @ rotation.T) * [1, -1, -1] + [shift[0], shift[1], distance]
    return np.column_stack(
        [
            focal * camera[:, :2] / camera[:, 2:] + centre,
            (camera[:, 2] - distance) * focal / distance,
        ]
    )


def test_the_canonical_stable_points_are_the_landmarker_bundles():
    from factorportrait.expression.landmarks import CANONICAL_STABLE
    from factorportrait.head_pose import load_canonical_face
    from factorportrait.head_pose.template import STABLE_LANDMARKS

    canonical = load_canonical_face("assets/face_landmarker.task").vertices
    np.testing.assert_allclose(CANONICAL_STABLE, canonical[STABLE_LANDMARKS], atol=1e-5)


def test_an_expression_moves_the_c3_codes_more_than_a_pose_or_camera_change():
    """The mouth opened by 1 cm against a head turned by 20 degrees, tilted by 15, rolled by
    15, or moved 5 cm aside: in the head's own frame the expression moves the codes at least
    twice as much as any of them (the perspective of a camera this near is what is left of the
    pose); in the aligned crop (the codes before) a head turn moved them ten times more than
    the expression. As the conditioning stage computes them (``head_frame_landmarks``)."""
    from factorportrait.expression import head_frame_landmarks
    from factorportrait.expression.crops import landmarks_in_aligned_crops

    face = _synthetic_face()
    neutral = _tracked(face)
    expression = _tracked(_open_mouth(face, 1.0))
    poses = {
        "yaw 20": _tracked(face, yaw=20),
        "pitch 15": _tracked(face, pitch=15),
        "roll 15": _tracked(face, roll=15),
        "5 cm aside": _tracked(face, shift=(4.0, 3.0)),
        "nearer": _tracked(face, distance=45),
    }

    def moved(codes, a, b):
        return float(((codes(a[None]) - codes(b[None])) ** 2).mean())

    for codes, holds in ((head_frame_landmarks, True), (landmarks_in_aligned_crops, False)):
        by_expression = moved(codes, expression, neutral)
        by_pose = {name: moved(codes, pose, neutral) for name, pose in poses.items()}
        assert (by_expression > 2 * max(by_pose.values())) == holds, (
            codes.__name__,
            by_expression,
            by_pose,
        )
    # The stable points are pinned by the fit: 0 in every frame.
    from factorportrait.head_pose.template import STABLE_LANDMARKS

    codes = head_frame_landmarks(np.stack([neutral, expression, poses["yaw 20"]]))
    assert codes.shape == (3, 478, 2) and not codes[:, STABLE_LANDMARKS].any()
