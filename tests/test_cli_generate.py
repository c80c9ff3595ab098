"""`make-tiny-checkpoint`, `init-from-wan` and `generate` from the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from factorportrait.io.media import read_video
from factorportrait.pipelines.generation import resolve_device

# A CUDA device index this machine does not have, on any machine (0 where there is no CUDA),
# and the one-line error that `generate` must give for it there.
MISSING_CUDA = f"cuda:{torch.cuda.device_count()}"
MISSING_CUDA_ERROR = (
    f"error: device: {MISSING_CUDA} does not exist"
    if torch.cuda.is_available()
    else "error: device: CUDA was asked for but none is available"
)


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "factorportrait", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    result = _run("make-tiny-checkpoint", str(path), "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "RANDOM" in result.stdout and "untrained" in result.stdout
    return path


def test_tiny_checkpoint_says_it_is_untrained(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "transformer" / "config.json").read_text())
    assert config["training_status"] == "untrained"
    assert not list(tiny_checkpoint.rglob("*.bin"))


def test_generate_writes_the_same_video_for_the_same_seed(
    tiny_checkpoint, pyfeat, landmarker_path, tmp_path
):
    common = ["generate", "--checkpoint", str(tiny_checkpoint), "--portrait", str(pyfeat / "single_face.jpg"),
              "--driving", str(pyfeat / "single_face.mp4"), "--mode", "novel-dynamic", "--frames", "9",
              "--size", "64", "--steps", "2", "--seed", "7", "--device", "cpu",
              "--landmarker", str(landmarker_path)]  # fmt: skip
    first = _run(*common, "--out", str(tmp_path / "a b.mp4"))
    assert first.returncode == 0, first.stderr
    assert "untrained" in first.stdout and "labelled" in first.stdout
    second = _run(*common, "--out", str(tmp_path / "second.mp4"), "--save-conditioning")
    assert second.returncode == 0, second.stderr
    a, b = read_video(tmp_path / "a b.mp4"), read_video(tmp_path / "second.mp4")
    assert a.frames.shape == (9, 64, 64, 3)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a b.mp4",
        "second.conditioning.npz",
        "second.mp4",
    ]  # no leftovers
    # The pair is what `evaluate` reads; the tiny model's noise has no face to measure.
    from factorportrait.evaluation.harness import evaluate

    report = evaluate(tmp_path, tmp_path / "report", landmarker_path)
    assert report["count"] == 1
    sample = report["samples"][0]
    assert sample["name"] == "second" and sample["frames"] == 9
    assert sample["face_tracked_fraction"] == 0 and "no face found" in sample["notes"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--checkpoint", "{tmp}/nothing-here"],
            "error: checkpoint {tmp}/nothing-here: cannot load it",
        ),
        (["--checkpoint", "{tmp}"], "error: checkpoint {tmp}: no model_index.json"),
        (
            ["--checkpoint", "{ckpt}", "--out", "{tmp}/video.avi"],
            "error: --out: {tmp}/video.avi must end in .mp4",
        ),
        (["--checkpoint", "{ckpt}", "--device", MISSING_CUDA], MISSING_CUDA_ERROR),
        (["--checkpoint", "{ckpt}", "--steps", "0"], "error: steps: 0 is outside [1, 200]"),
        (
            ["--checkpoint", "{ckpt}", "--portrait", "{media}/free-mountain-vector-01.jpg"],
            "error: portrait: no face found",
        ),
    ],
)
def test_generate_errors_exit_2_with_one_line(
    tiny_checkpoint, pyfeat, landmarker_path, tmp_path, args, message
):
    values = {"tmp": tmp_path, "ckpt": tiny_checkpoint, "media": pyfeat}
    args = [a.format(**values) for a in args]
    base = {
        "--portrait": str(pyfeat / "single_face.jpg"),
        "--out": str(tmp_path / "out.mp4"),
        "--device": "cpu",
    }
    for flag, value in base.items():
        if flag not in args:
            args += [flag, value]
    result = _run(
        "generate",
        *args,
        "--mode",
        "camera-only",
        "--frames",
        "5",
        "--size",
        "32",
        "--landmarker",
        str(landmarker_path),
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(message.format(**values)), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_checkpoint_commands_refuse_bad_targets(tiny_checkpoint, tmp_path):
    result = _run("make-tiny-checkpoint", str(tiny_checkpoint))
    assert result.returncode == 2 and "exists and is not empty" in result.stderr
    result = _run("init-from-wan", "--wan", str(tmp_path / "no-wan"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --wan {tmp_path / 'no-wan'}: not a loadable")


@pytest.mark.parametrize(
    ("available", "count", "device", "expected"),
    [
        (False, 0, "auto", "cpu"),
        (True, 1, "auto", "cuda"),
        (False, 0, "cpu", "cpu"),
        (True, 2, "cuda", "cuda"),
        (True, 2, "cuda:1", "cuda:1"),
        (False, 0, "cuda", "error: device: CUDA was asked for but none is available"),
        (False, 0, "cuda:0", "error: device: CUDA was asked for but none is available"),
        (
            True,
            1,
            "cuda:1",
            "error: device: cuda:1 does not exist (this machine has 1 CUDA device)",
        ),
        (
            True,
            2,
            "cuda:7",
            "error: device: cuda:7 does not exist (this machine has 2 CUDA devices)",
        ),
        (False, 0, "gpu", "error: device: 'gpu' is not a torch device (try cpu, cuda, cuda:0)"),
    ],
)
def test_resolve_device_on_machines_with_and_without_cuda(
    monkeypatch, available, count, device, expected
):
    """Both sides of every device check, whatever this machine has: CUDA's presence and its
    device count are stood in for."""
    from factorportrait.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if expected.startswith("error: "):
        with pytest.raises(InputError) as error:
            resolve_device(device)
        assert f"error: {error.value}" == expected
    else:
        assert resolve_device(device) == torch.device(expected)


def test_generate_with_the_geometry_engine_needs_no_checkpoint_and_labels_its_video(
    pyfeat, landmarker_path, tmp_path
):
    """`generate --engine geometry`: no checkpoint, no GPU; the video has the requested size and
    length and carries its banner (its pixels are checked in test_geometry_engine.py)."""
    out = tmp_path / "geometry.mp4"
    result = _run(
        "generate", "--engine", "geometry", "--portrait", str(pyfeat / "single_face.jpg"),
        "--mode", "camera-only", "--frames", "5", "--size", "256", "--out", str(out),
        "--landmarker", str(landmarker_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "engine: geometry" in result.stdout and "not diffusion" in result.stdout
    frames = read_video(out).frames
    assert frames.shape == (5, 256, 256, 3)
    band = max(12, 256 // 14)
    assert frames[:, :band].mean() < frames[:, band:].mean()  # the banner's dark band
    # Without a diffusion checkpoint the other engines refuse in one sentence.
    refused = _run(
        "generate", "--portrait", str(pyfeat / "single_face.jpg"), "--mode", "camera-only",
        "--out", str(tmp_path / "x.mp4"), "--engine", "factorportrait",
    )  # fmt: skip
    assert refused.returncode != 0 and "--checkpoint" in refused.stderr


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("wan-animate", {"steps": 20, "guidance": 1.0, "fps": 30.0, "size": 720}),
        ("factorportrait", {"steps": 30, "guidance": 3.0, "fps": 16.0, "size": 512}),
        ("geometry", {"steps": 30, "guidance": 3.0, "fps": 16.0, "size": 512}),
    ],
)
def test_generate_takes_the_engines_own_defaults_when_none_are_given(engine, expected, monkeypatch):
    """Nothing set: the engine's own sampling and video defaults (engines.REGISTRY); whatever
    the user sets wins. The engine may come from --engine or $FACTORPORTRAIT_ENGINE."""
    from factorportrait.cli import build_parser
    from factorportrait.cli.arguments import conditioning_settings
    from factorportrait.cli.generate import sampling_settings

    monkeypatch.delenv("FACTORPORTRAIT_ENGINE", raising=False)
    base = ["generate", "--portrait", "p.jpg", "--mode", "frontal-dynamic", "--out", "o.mp4"]
    for args in ([*base, "--engine", engine], base):
        if "--engine" not in args:
            monkeypatch.setenv("FACTORPORTRAIT_ENGINE", engine)
        parsed = build_parser().parse_args(args)
        settings, _ = conditioning_settings(parsed)
        sampling = sampling_settings(parsed)
        assert {
            "steps": sampling.steps,
            "guidance": sampling.guidance_scale,
            "fps": settings.fps,
            "size": settings.height,
        } == expected
        assert settings.width == settings.height
    chosen = build_parser().parse_args(
        [*base, "--engine", engine, "--steps", "7", "--guidance", "2.5", "--fps", "24",
         "--size", "256"]
    )  # fmt: skip
    settings, _ = conditioning_settings(chosen)
    sampling = sampling_settings(chosen)
    assert (sampling.steps, sampling.guidance_scale, settings.fps, settings.height) == (
        7, 2.5, 24.0, 256,
    )  # fmt: skip


def test_wan_animate_generate_resamples_the_driving_clip_to_its_30_fps(
    landmarker_path, tmp_path, monkeypatch, capsys
):
    """`generate --engine wan-animate` with nothing set: 20 steps at guidance 1, 720x720, and
    the driving clip read at 30 fps (each output frame the clip's frame nearest its time, as
    Wan's preprocessing reads it); a 16 fps request becomes 30 fps with a note. The model is
    stood in for: what it is handed is checked."""
    from pathlib import Path

    from factorportrait.cli import main
    from factorportrait.engines.wan_animate import engine

    assets = Path(__file__).resolve().parents[1] / "assets"
    clip = assets / "example_expressive.mp4"
    handed = {}

    def fake_generate(pipeline, cond, *, steps, guidance, seed, callback=None):
        handed.update(cond=cond, steps=steps, guidance=guidance)
        return np.zeros((cond.frames, cond.height, cond.width, 3), np.uint8)

    monkeypatch.setattr(
        engine, "load_wan_animate", lambda *a, **k: type("Stub", (), {"_execution_device": "cpu"})()
    )
    monkeypatch.setattr(engine, "generate_wan_animate", fake_generate)
    monkeypatch.delenv("FACTORPORTRAIT_ENGINE", raising=False)
    args = ["generate", "--engine", "wan-animate", "--checkpoint", "Wan-AI/stub",
            "--portrait", str(assets / "example_portrait.jpg"), "--driving", str(clip),
            "--mode", "frontal-dynamic", "--frames", "9",
            "--landmarker", str(landmarker_path)]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a.mp4")]) == 0
    cond = handed["cond"]
    assert (handed["steps"], handed["guidance"]) == (20, 1.0)
    assert cond.fps == 30.0 and (cond.height, cond.width) == (720, 720)
    video = read_video(clip)
    times = np.arange(cond.frames) / 30.0
    nearest = np.abs(video.times[None, :] - times[:, None]).argmin(axis=1)
    np.testing.assert_array_equal(cond.driving_frames, video.frames[nearest])
    assert "works at 30 fps" not in capsys.readouterr().out  # nothing asked otherwise
    assert main([*args, "--fps", "16", "--out", str(tmp_path / "b.mp4")]) == 0
    printed = capsys.readouterr().out
    assert "wan-animate works at 30 fps" in printed and "16 fps" in printed
    assert handed["cond"].fps == 30.0
    assert read_video(tmp_path / "b.mp4").frames.shape[0] == 9
