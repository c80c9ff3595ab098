"""Sampling settings (one type, its defaults and limits), writing a generation's files, and the
command line's start-up staying free of the heavy libraries."""

import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from factorportrait.cli import build_parser
from factorportrait.errors import InputError
from factorportrait.io.media import read_video
from factorportrait.pipelines.generation import (
    SAVED_CONDITIONING,
    GenerationSettings,
    conditioning_path,
    write_generation,
)


def test_defaults_are_the_documented_ones_and_the_cli_uses_them(monkeypatch):
    # README, Command line and The model and the pipeline: 30 steps, guidance 3, seed 0; the
    # CLI leaves steps and guidance to the engine named (wan-animate has its own: README,
    # Engines), FactorPortrait's being these.
    from factorportrait.cli.generate import sampling_settings

    monkeypatch.delenv("FACTORPORTRAIT_ENGINE", raising=False)
    assert GenerationSettings() == GenerationSettings(steps=30, guidance_scale=3.0, seed=0)
    args = build_parser().parse_args(
        ["generate", "--checkpoint", "c", "--portrait", "p.jpg", "--mode", "camera-only"]
        + ["--out", "o.mp4"]
    )
    assert sampling_settings(args) == GenerationSettings(steps=30, guidance_scale=3.0, seed=0)


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(steps=1, guidance_scale=1.0),
        GenerationSettings(steps=200, guidance_scale=20.0),
        GenerationSettings(seed=-1),  # torch takes signed 64-bit seeds
        GenerationSettings(seed=2**64 - 1),  # and unsigned ones
        GenerationSettings(steps=np.int64(5), guidance_scale=np.float32(2.5)),
    ],
)
def test_settings_at_their_limits_are_accepted(settings):
    assert settings.validated() is settings


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (GenerationSettings(steps=0), "steps: 0 is outside [1, 200]"),
        (GenerationSettings(steps=201), "steps: 201 is outside [1, 200]"),
        (GenerationSettings(steps=2.5), "steps: expected an integer, got 2.5"),
        (GenerationSettings(steps=True), "steps: expected an integer, got True"),
        (GenerationSettings(guidance_scale=0.5), "guidance: 0.5 is outside [1, 20]"),
        (GenerationSettings(guidance_scale=20.5), "guidance: 20.5 is outside [1, 20]"),
        (GenerationSettings(guidance_scale=math.nan), "guidance: nan is outside [1, 20]"),
        (GenerationSettings(guidance_scale="3"), "guidance: expected a number, got '3'"),
        (GenerationSettings(seed=2**64), f"seed: {2**64} is outside"),
        (GenerationSettings(seed=-(2**63) - 1), f"seed: {-(2**63) - 1} is outside"),
    ],
)
def test_settings_outside_their_limits_are_refused(settings, message):
    with pytest.raises(InputError) as error:
        settings.validated()
    assert str(error.value).startswith(message)


def _conditioning(frames: int):
    """What write_generation reads from a Conditioning: its frame rate and the arrays it names."""
    arrays = {
        "K": np.eye(3, dtype=np.float32)[None].repeat(frames, 0),
        "c2w": np.eye(4, dtype=np.float32)[None].repeat(frames, 0),
        "head_pose": np.eye(4, dtype=np.float32)[None].repeat(frames, 0),
        "blendshapes": np.zeros((frames, 52), np.float32),
        "blendshape_names": np.array([f"shape{i}" for i in range(52)]),
        "fps": np.float32(8),
        "mode": np.array("camera-only"),
        "reference": np.zeros((16, 16, 3), np.uint8),
        "source_landmarks": np.zeros((478, 3), np.float32),
        "normals": np.zeros((frames, 16, 16, 3), np.float32),  # bulky: not saved
    }
    return SimpleNamespace(
        fps=8.0,
        arrays=lambda names=None: arrays if names is None else {n: arrays[n] for n in names},
    )


def test_write_generation_writes_the_video_and_the_conditioning_evaluate_reads(tmp_path):
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    frames[:, :, 8:] = 200
    paths = write_generation(tmp_path / "a b.mp4", frames, _conditioning(5), save_conditioning=True)
    assert paths == {
        "video": tmp_path / "a b.mp4",
        "conditioning": tmp_path / "a b.conditioning.npz",
    }
    assert conditioning_path(tmp_path / "a b.mp4") == paths["conditioning"]
    video = read_video(paths["video"])
    assert video.frames.shape == (5, 16, 16, 3)
    np.testing.assert_allclose(video.times, np.arange(5) / 8.0, atol=1e-3)  # at 8 fps
    assert np.abs(video.frames.astype(int) - frames).max() <= 8  # H.264, nearly lossless here
    with np.load(paths["conditioning"]) as saved:
        assert sorted(saved.files) == sorted(SAVED_CONDITIONING)
        assert str(saved["mode"]) == "camera-only" and saved["K"].shape == (5, 3, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a b.conditioning.npz", "a b.mp4"]


def test_write_generation_leaves_nothing_behind_when_it_fails(tmp_path):
    frames = np.zeros((5, 16, 16, 3), np.uint8)
    broken = _conditioning(5)
    arrays = broken.arrays()
    del arrays["head_pose"]  # fails after the video was encoded, while saving the arrays
    with pytest.raises(KeyError):
        write_generation(tmp_path / "out.mp4", frames, broken, save_conditioning=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="even sides"):  # H.264 yuv420p needs even sides
        write_generation(tmp_path / "out.mp4", frames[:, :15], _conditioning(5))
    assert list(tmp_path.iterdir()) == []
    assert write_generation(tmp_path / "out.mp4", frames, broken) == {"video": tmp_path / "out.mp4"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_the_command_line_starts_without_torch_or_diffusers():
    # --help builds every command's parser; the handlers import the heavy libraries when run.
    code = (
        "import sys\n"
        "from factorportrait.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'mediapipe', 'cv2') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
