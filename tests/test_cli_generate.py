"""`make-tiny-checkpoint`, `init-from-wan` and `generate` from the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

from factorportrait.io.media import read_video


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
        (
            ["--checkpoint", "{ckpt}", "--device", "cuda:7"],
            "error: device: CUDA was asked for but none is available",
        ),
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
