"""`ablate`: several checkpoints (here a tiny full model and a tiny C2, no normal maps) on the
same prepared held-out split, and two engines (a tiny FactorPortrait checkpoint and the tiny
wan-animate stand-in) on the same portrait and driving clip, every metric side by side; and
training's validation writing what `evaluate` reads.

Known answers: PSNR in the table is 10 log10(255^2 / MSE) of the files written, computed here;
a run whose videos are the ground truth scores PSNR 100 (the cap) and SSIM 1 and is the best;
the conditioning written for a held-out sample holds that sample's own blendshapes; every run
is compared against one and the same ground truth; metrics that need weights nobody gave are
marked skipped, in the table and its notes."""

import argparse
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from factorportrait.cli.evaluate import register_ablate
from factorportrait.engines.wan_animate.loading import make_tiny_wan_animate_checkpoint
from factorportrait.errors import InputError
from factorportrait.evaluation.ablation import ablate, parse_run
from factorportrait.evaluation.ablation_report import render_html, render_markdown
from factorportrait.evaluation.harness import evaluate
from factorportrait.io import write_video
from factorportrait.io.media import read_image, read_video
from factorportrait.pipelines.checkpoints import make_tiny_checkpoint, tiny_pipeline
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.training.data import PreparedSamples
from factorportrait.training.prepare import prepare
from factorportrait.training.validation import validate


def _cli(argv):
    """The `ablate` command as main() runs it (its InputErrors left for pytest to see)."""
    parser = argparse.ArgumentParser()
    register_ablate(parser.add_subparsers())
    args = parser.parse_args(["ablate", *argv])
    return args.handler(args)


def _psnr_by_hand(video, truth):
    """Mean over frames of 10 log10(255^2 / MSE), capped at 100 dB for identical frames."""
    a = read_video(video).frames.astype(np.float64)
    b = read_video(truth).frames.astype(np.float64)
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean([100.0 if m == 0 else min(100.0, 10 * np.log10(255**2 / m)) for m in mse]))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory, landmarker_path):
    """A prepared folder whose validation split is one clip of a real face rocking (5 frames of
    32x32), and the two tiny checkpoints that share its VAE and expression backbone."""
    root = tmp_path_factory.mktemp("ablate")
    photo = read_image("assets/example_portrait.jpg")
    frames = [
        cv2.warpAffine(
            photo,
            cv2.getRotationMatrix2D((240, 170), 6 * np.sin(i / 4), 1.0),
            (512, 512),
            borderMode=cv2.BORDER_REFLECT,
        )[::2, ::2].copy()
        for i in range(12)
    ]
    write_video(root / "clip.mp4", np.stack(frames), 8)
    (root / "manifest.jsonl").write_text(
        json.dumps({"id": "rocking", "video": "clip.mp4", "split": "val"}) + "\n"
    )
    make_tiny_checkpoint(root / "full", seed=0)
    tiny_pipeline(0, use_normals=False).save_pretrained(root / "C2", safe_serialization=True)
    pipeline = load_pipeline(root / "full", device="cpu")
    prepare(
        root / "manifest.jsonl",
        root / "data",
        pipeline,
        frames=5,
        size=32,
        fps=8.0,
        landmarker=landmarker_path,
    )
    return root


@pytest.fixture(scope="module")
def ablation(held_out, landmarker_path):
    out = held_out / "table"
    _cli(
        [
            "--checkpoint", f"full={held_out / 'full'}",
            "--checkpoint", f"C2={held_out / 'C2'}",
            "--data", str(held_out / "data"),
            "--steps", "1", "--device", "cpu",
            "--landmarker", str(landmarker_path),
            "--out", str(out),
        ]
    )  # fmt: skip
    return out


def test_ablate_writes_the_table_the_json_and_the_page(ablation, held_out):
    comparison = json.loads((ablation / "ablation.json").read_text())
    assert list(comparison["runs"]) == ["full", "C2"]
    assert {run["engine"] for run in comparison["runs"].values()} == {"factorportrait"}
    for label in ("full", "C2"):
        folder = ablation / label
        assert (folder / "rocking.mp4").is_file() and (
            folder / "rocking.ground_truth.mp4"
        ).is_file()
        # PSNR in the table: the formula on the files written.
        psnr = _psnr_by_hand(folder / "rocking.mp4", folder / "rocking.ground_truth.mp4")
        assert comparison["table"][label]["psnr_db"] == pytest.approx(psnr, abs=1e-4)
        assert 0 < comparison["table"][label]["ssim"] < 1
    # One ground truth for every run (the same held-out clip through the same VAE) ...
    np.testing.assert_array_equal(
        read_video(ablation / "full" / "rocking.ground_truth.mp4").frames,
        read_video(ablation / "C2" / "rocking.ground_truth.mp4").frames,
    )
    # ... and a conditioning holding the held-out sample's own blendshapes and portrait.
    sample = PreparedSamples(held_out / "data", "val")[0]
    with np.load(ablation / "C2" / "rocking.conditioning.npz") as saved:
        np.testing.assert_array_equal(saved["blendshapes"], sample["blendshapes"].numpy())
        assert saved["reference"].shape == (32, 32, 3)
    table = (ablation / "ablation.md").read_text()
    assert "| run | engine | videos | PSNR ↑ | SSIM ↑ | LPIPS ↓ | FVD ↓ |" in table
    assert "| full | factorportrait | 1 |" in table and "| C2 | factorportrait | 1 |" in table
    assert "CSIM" not in table.split("\n")[0]  # dlib measured identity (the default): no CSIM
    assert "- lpips: skipped" in table and "- fvd: skipped" in table
    page = (ablation / "ablation.html").read_text()
    for source in ("full/rocking.mp4", "C2/rocking.mp4", "full/rocking.ground_truth.mp4"):
        assert f"src='{source}'" in page and (ablation / source).is_file()


def test_a_run_that_is_the_ground_truth_is_perfect_and_best(ablation, tmp_path, landmarker_path):
    perfect = tmp_path / "perfect"
    perfect.mkdir()
    for suffix in (".ground_truth.mp4", ".conditioning.npz"):
        shutil.copy(ablation / "full" / f"rocking{suffix}", perfect / f"rocking{suffix}")
    shutil.copy(ablation / "full" / "rocking.ground_truth.mp4", perfect / "rocking.mp4")
    comparison = ablate(
        tmp_path / "table",
        results=[f"full={ablation / 'full'}", f"perfect={perfect}"],
        landmarker=landmarker_path,
    )
    assert comparison["table"]["perfect"]["psnr_db"] == 100.0
    assert comparison["table"]["perfect"]["ssim"] == pytest.approx(1.0)
    assert comparison["runs"]["perfect"]["engine"] == "results"
    rows = (tmp_path / "table" / "ablation.md").read_text().splitlines()
    perfect_row = next(r for r in rows if r.startswith("| perfect |"))
    assert "| **100** | **1** |" in perfect_row  # the best of each column in bold


def test_training_validation_writes_what_evaluate_reads(held_out, tmp_path, landmarker_path):
    pipe = load_pipeline(held_out / "C2", device="cpu")
    sample = PreparedSamples(held_out / "data", "val")[0]
    folder = tmp_path / "validation"
    for step in (1, 2):
        validate(pipe, sample, folder / f"step-{step:06d}.mp4", 1, torch.device("cpu"))
    lines = [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]
    assert [line["name"] for line in lines] == ["step-000001", "step-000002"]
    with np.load(folder / "held-out.conditioning.npz") as saved:
        np.testing.assert_array_equal(saved["blendshapes"], sample["blendshapes"].numpy())
    # The ground truth is the sample's target through the VAE (within the codec's error).
    with torch.no_grad():
        decoded = pipe.decode_latents(sample["target_latents"][None])[0]
    target = ((decoded.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 3, 0).numpy()
    truth = read_video(folder / "held-out.ground_truth.mp4").frames.astype(np.float64)
    assert truth.shape == target.shape and np.abs(truth - target).mean() < 4
    report = evaluate(folder / "index.jsonl", tmp_path / "report", landmarker_path)
    assert report["count"] == 2
    psnr = _psnr_by_hand(folder / "step-000001.mp4", folder / "held-out.ground_truth.mp4")
    assert report["samples"][0]["summary"]["psnr_db"] == pytest.approx(psnr, abs=1e-4)


def test_every_engine_side_by_side_on_the_same_inputs(held_out, tmp_path, landmarker_path):
    make_tiny_wan_animate_checkpoint(tmp_path / "animate")
    truth = np.full((5, 64, 64, 3), 128, np.uint8)
    write_video(tmp_path / "truth.mp4", truth, 16)
    entry = {  # paths relative to the inputs file
        "name": "nasa",
        "portrait": "portrait.jpg",
        "driving": "example_driving.mp4",
        "mode": "frontal-dynamic",
        "frames": 5,
        "size": 64,
        "ground_truth": "truth.mp4",
    }
    shutil.copy("assets/example_driving.mp4", tmp_path / "example_driving.mp4")
    shutil.copy("assets/example_portrait.jpg", tmp_path / "portrait.jpg")
    (tmp_path / "inputs.jsonl").write_text(json.dumps(entry) + "\n")
    out = tmp_path / "engines"
    _cli(
        [
            "--checkpoint", f"factorportrait={held_out / 'full'}",
            "--checkpoint", f"animate={tmp_path / 'animate'}",  # engine read from the folder
            "--checkpoint", "geo=geometry",  # the geometric engine: no checkpoint
            "--inputs", str(tmp_path / "inputs.jsonl"),
            "--steps", "1", "--device", "cpu",
            "--landmarker", str(landmarker_path),
            "--out", str(out),
        ]
    )  # fmt: skip
    comparison = json.loads((out / "ablation.json").read_text())
    assert comparison["runs"]["factorportrait"]["engine"] == "factorportrait"
    assert comparison["runs"]["animate"]["engine"] == "wan-animate"
    assert comparison["runs"]["geo"]["engine"] == "geometry"
    saved = {}
    for label in ("factorportrait", "animate", "geo"):
        video = read_video(out / label / "nasa.mp4").frames
        assert video.shape == (5, 64, 64, 3)
        # Every engine's output carries its banner: the top band darkened to a quarter.
        assert video[:, :12].mean() < 0.5 * video[:, 16:].mean()
        psnr = _psnr_by_hand(out / label / "nasa.mp4", out / label / "nasa.ground_truth.mp4")
        assert comparison["table"][label]["psnr_db"] == pytest.approx(psnr, abs=1e-4)
        with np.load(out / label / "nasa.conditioning.npz") as arrays:
            saved[label] = {key: arrays[key] for key in ("c2w", "head_pose", "blendshapes")}
    for key in saved["animate"]:  # the same conditioning, built once, for every engine
        np.testing.assert_array_equal(saved["animate"][key], saved["factorportrait"][key])
        np.testing.assert_array_equal(saved["geo"][key], saved["factorportrait"][key])
    page = (out / "ablation.html").read_text()
    assert "src='animate/nasa.mp4'" in page and "src='factorportrait/nasa.mp4'" in page
    assert "| animate | wan-animate |" in (out / "ablation.md").read_text()
    assert "| geo | geometry |" in (out / "ablation.md").read_text()


def test_ablate_refuses_what_it_cannot_compare(held_out, tmp_path):
    full = f"full={held_out / 'full'}"
    with pytest.raises(InputError, match="exactly one held-out set"):
        _cli(["--checkpoint", full, "--out", str(tmp_path / "a")])
    with pytest.raises(InputError, match="labels must differ"):
        ablate(tmp_path / "b", checkpoints=[full, full], data=held_out / "data")
    with pytest.raises(InputError, match="cannot read prepared latents"):
        ablate(
            tmp_path / "c",
            checkpoints=[f"animate=wan-animate:{tmp_path}"],
            data=held_out / "data",
        )
    with pytest.raises(InputError, match="expected LABEL=PATH"):
        parse_run("no-label")
    assert parse_run("x=wan-animate:Wan-AI/Wan2.2-Animate-14B-Diffusers").engine == "wan-animate"
    assert parse_run(f"x={held_out / 'C2'}").engine == "factorportrait"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _comparison(rows: dict, counts: dict, measured: dict) -> dict:
    """A comparison as ``compare`` makes it, for runs of existing results."""
    return {
        "runs": {label: {"engine": "results", "source": label, "results": label} for label in rows},
        "table": rows,
        "skipped": {},
        "reports": {
            label: {"count": counts[label], "measured": measured[label], "samples": []}
            for label in rows
        },
    }


def test_the_table_names_the_identity_embedder_and_counts_the_videos_of_each_mean(tmp_path):
    """dlib's identity under dlib's headings (distance, lower better; same-person share, higher
    better), never CSIM; ArcFace's as ArcFace CSIM; each run's videos, and "(n of N)" after a
    mean over fewer of them (here run a's identity was measured on 1 of its 2 videos)."""
    dlib = _comparison(
        {
            "a": {
                "dlib_distance": 0.5,
                "dlib_same_person_share": 1.0,
                "face_tracked_fraction": 1.0,
            },
            "b": {
                "dlib_distance": 0.7,
                "dlib_same_person_share": 0.0,
                "face_tracked_fraction": 1.0,
            },
        },
        {"a": 2, "b": 3},
        {
            "a": {"dlib_distance": 1, "dlib_same_person_share": 1},
            "b": {"dlib_distance": 3, "dlib_same_person_share": 3},
        },
    )
    lines = render_markdown(dlib).splitlines()
    assert lines[0] == (
        "| run | engine | videos | dlib distance ↓ | dlib same person ↑ | Face found ↑ |"
    )
    assert lines[2] == "| a | results | 2 | **0.5 (1 of 2)** | **1 (1 of 2)** | 1 |"
    assert lines[3] == "| b | results | 3 | 0.7 | 0 | 1 |"
    assert any("dlib" in line and "not a CSIM" in line for line in lines[4:])
    page = render_html(dlib, {}, tmp_path)
    assert "<th>videos</th>" in page and "<td>2</td>" in page
    assert "<b>0.5 (1 of 2)</b>" in page and "CSIM ↑" not in page
    arcface = _comparison(
        {"a": {"arcface_csim": 0.8}, "b": {"arcface_csim": 0.6}},
        {"a": 1, "b": 1},
        {"a": {"arcface_csim": 1}, "b": {"arcface_csim": 1}},
    )
    lines = render_markdown(arcface).splitlines()
    assert lines[0] == "| run | engine | videos | ArcFace CSIM ↑ |"
    assert lines[2] == "| a | results | 1 | **0.8** |"
