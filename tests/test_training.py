"""Data preparation and the training loop on a handful of tiny clips made here: the tiny model
overfits, a resumed run continues from its saved step, the checkpoint loads and generates."""

import json

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from factorportrait import FactorPortraitPipeline
from factorportrait.errors import InputError
from factorportrait.io import write_video
from factorportrait.io.media import read_image
from factorportrait.pipelines.checkpoints import component_digests, make_tiny_checkpoint
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.training.config import TrainConfig
from factorportrait.training.loop import (
    FlowMatchingObjective,
    PreparedSamples,
    expression_codes,
    train,
    training_loss,
)
from factorportrait.training.prepare import prepare, read_manifest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, landmarker_path):
    root = tmp_path_factory.mktemp("training")
    photo = read_image("assets/example_portrait.jpg")
    lines = []
    for k in range(3):  # three short clips of a head rocking by different amounts
        frames = [
            cv2.warpAffine(
                photo,
                cv2.getRotationMatrix2D((240, 170), (k + 1) * 3 * np.sin(i / 4), 1.0),
                (512, 512),
                borderMode=cv2.BORDER_REFLECT,
            )[::2, ::2].copy()
            for i in range(24)
        ]
        write_video(root / f"clip{k}.mp4", np.stack(frames), 8)
        lines.append(
            {"id": f"clip{k}", "video": f"clip{k}.mp4", "split": "val" if k == 2 else "train"}
        )
    lines.append({"id": "broken", "video": "missing.mp4"})
    lines.append({"id": "moving", "video": "clip0.mp4", "cameras": "cams.json"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    make_tiny_checkpoint(root / "tiny", seed=0)
    pipeline = load_pipeline(root / "tiny", device="cpu")
    counts = _prepare_small(root / "manifest.jsonl", root / "data", pipeline, landmarker_path)
    return root, counts


def test_prepare_writes_samples_and_reports_bad_clips(workspace):
    root, counts = workspace
    assert counts == {"prepared": 3, "skipped": 2, "samples": 3}
    skipped = [
        json.loads(line) for line in (root / "data" / "skipped.jsonl").read_text().splitlines()
    ]
    reasons = {entry["id"]: entry["reason"] for entry in skipped}
    assert (
        "cannot read it" in reasons["broken"]
        and "cameras cams.json: cannot read it" in reasons["moving"]
    )
    sample = load_file(str(root / "data" / "samples" / "clip0.safetensors"))
    assert sample["target_latents"].shape == (16, 2, 4, 4)
    assert sample["reference_latents"].shape == (16, 1, 4, 4)
    assert sample["normal_latents"].shape == (16, 2, 4, 4)
    assert sample["ray_latents"].shape == (24, 2, 4, 4)
    # The frozen backbone's features are cached (CLS + mean token: 2 x 16 in the tiny one);
    # the crops themselves only with keep_crops.
    assert sample["expression_features"].shape == (5, 32) and "crops" not in sample
    assert sample["blendshapes"].shape == (5, 52) and sample["crop_landmarks"].shape == (5, 478, 2)
    assert (
        len(PreparedSamples(root / "data", "train")) == 2
        and len(PreparedSamples(root / "data", "val")) == 1
    )


def test_prepare_is_resumable(workspace, landmarker_path):
    root, _ = workspace
    before = {p.name: p.stat().st_mtime_ns for p in (root / "data" / "samples").iterdir()}
    pipeline = load_pipeline(root / "tiny", device="cpu")
    counts = _prepare_small(root / "manifest.jsonl", root / "data", pipeline, landmarker_path)
    assert counts["samples"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in (root / "data" / "samples").iterdir()} == before


def test_shards_prepare_the_same_samples(workspace, landmarker_path, tmp_path):
    """Two shards into one folder make what one run made; a failure is listed once, and
    leaves the list when a rerun succeeds."""
    root, _ = workspace
    pipeline = load_pipeline(root / "tiny", device="cpu")
    for k in (0, 1):
        _prepare_small(
            root / "manifest.jsonl", tmp_path / "data", pipeline, landmarker_path, shard=(k, 2)
        )
    single = sorted(p.name for p in (root / "data" / "samples").iterdir())
    assert sorted(p.name for p in (tmp_path / "data" / "samples").iterdir()) == single
    index = (tmp_path / "data" / "index.jsonl").read_text().splitlines()
    assert len(index) == len(single) == 3
    sample, again = (
        load_file(str(folder / "samples" / "clip1.safetensors"))
        for folder in (root / "data", tmp_path / "data")
    )
    assert all(torch.equal(sample[key], again[key]) for key in sample)
    skipped = [
        json.loads(line)["id"]
        for line in (tmp_path / "data" / "skipped.jsonl").read_text().splitlines()
    ]
    assert sorted(skipped) == ["broken", "moving"]
    # The broken clip's video appears: the rerun prepares it and it leaves the list.
    (root / "missing.mp4").write_bytes((root / "clip0.mp4").read_bytes())
    try:
        _prepare_small(root / "manifest.jsonl", tmp_path / "data", pipeline, landmarker_path)
    finally:
        (root / "missing.mp4").unlink()
    skipped = [
        json.loads(line)["id"]
        for line in (tmp_path / "data" / "skipped.jsonl").read_text().splitlines()
    ]
    assert skipped == ["moving"]
    assert (tmp_path / "data" / "samples" / "broken.safetensors").is_file()


def _held_out_loss(checkpoint, data, config):
    """Training loss on fixed noise and noise levels (no dropout): comparable across runs."""
    pipe = FactorPortraitPipeline.from_pretrained(str(checkpoint), use_safetensors=True)
    samples = PreparedSamples(data, "train")
    with torch.no_grad():
        losses = [
            training_loss(
                FlowMatchingObjective(pipe.transformer, pipe.expression_encoder),
                {k: v[None] for k, v in samples[i].items()},
                config,
                torch.Generator().manual_seed(seed),
                drop=False,
            )
            for i in range(len(samples))
            for seed in range(6)
        ]
    return float(torch.stack(losses).mean())


def test_the_tiny_model_overfits_resumes_and_generates(workspace, tmp_path):
    root, _ = workspace
    config = TrainConfig(
        steps=40,
        learning_rate=3e-3,
        trainable="full",
        save_every=20,
        validate_every=40,
        validation_steps=2,
        log_every=5,
        drop_expression=0.1,
    )
    before = _held_out_loss(root / "tiny", root / "data", config)
    # First 20 steps, then the same run resumed to 40.
    first = train(
        root / "tiny",
        root / "data",
        tmp_path / "run",
        config.model_copy(update={"steps": 20}),
        cpu=True,
    )
    assert (
        first["steps"] == 20 and (tmp_path / "run" / "checkpoint-20" / "model_index.json").is_file()
    )
    resumed = train(root / "tiny", root / "data", tmp_path / "run", config, cpu=True)
    assert resumed["steps"] == 40 and len(resumed["losses"]) == 20  # only the 20 missing steps
    logged = [
        json.loads(line)["step"]
        for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert logged == [5, 10, 15, 20, 25, 30, 35, 40]
    assert list((tmp_path / "run").rglob("events.out.tfevents.*"))  # tensorboard curves
    after = _held_out_loss(tmp_path / "run" / "checkpoint-40", root / "data", config)
    assert after < 0.75 * before, (before, after)
    # The saved checkpoint is a pipeline: it loads and generates, still labelled in-training.
    pipe = FactorPortraitPipeline.from_pretrained(
        str(tmp_path / "run" / "checkpoint-40"), use_safetensors=True
    )
    assert pipe.transformer.config.training_status == "in-training" and pipe.untrained
    sample = PreparedSamples(root / "data", "val")[0]
    codes = expression_codes(pipe.expression_encoder, {k: v[None] for k, v in sample.items()})
    video = pipe(
        condition_latents={
            "reference_latents": sample["reference_latents"][None],
            "ray_latents": sample["ray_latents"][None],
            "normal_latents": sample["normal_latents"][None],
            "expression_codes": codes,
        },
        num_inference_steps=2,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0),
    ).frames
    assert video.shape == (1, 5, 32, 32, 3)
    assert (tmp_path / "run" / "validation" / "step-000040.mp4").is_file()


def test_config_and_manifest_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text('{"steps": 0}')
    with pytest.raises(InputError, match="steps: Input should be greater than or equal to 1"):
        TrainConfig.load(bad)
    bad.write_text('{"learning_rat": 0.1}')
    with pytest.raises(InputError, match="learning_rat: Extra inputs are not permitted"):
        TrainConfig.load(bad)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "video": "a.mp4"}\n{"id": "a", "video": "b.mp4"}\n')
    with pytest.raises(InputError, match="line 2: id 'a' must be unique"):
        read_manifest(manifest)
    for line, message in [
        ('{"id": "a", "video": "a.mp4", "camera": "c.json"}', "unknown field"),
        ('{"id": "a", "video": "a.mp4", "cameras": 3}', "cameras must be a non-empty string"),
        ('{"id": "a", "video": "a.mp4", "group": ""}', "group must be a non-empty string"),
        ('["a", "a.mp4"]', 'needs "id" and "video"'),
        ('{"id": "a b", "video": "a.mp4"}', "made of letters"),
    ]:
        manifest.write_text(line + "\n")
        with pytest.raises(InputError, match=message):
            read_manifest(manifest)


def test_prepare_shard_argument(tmp_path, capsys):
    from factorportrait.cli import main

    for shard in ("2/2", "x", "1/0"):
        args = ["prepare", "--manifest", "m.jsonl", "--out", str(tmp_path), "--checkpoint", "c"]
        assert main([*args, "--shard", shard]) == 2
        assert "--shard" in capsys.readouterr().err


def test_lora_with_ema_saves_the_merged_average(workspace, tmp_path):
    """LoRA with EMA: the checkpoint holds the EMA of the trained weights, LoRA merged in, and
    it equals the average computed here by hand from the live weights of each step (accelerate
    saves those in state/): the first EMA update copies the weights, the second uses the decay
    min(ema_decay, 2/11) = 0.1, so EMA = 0.1 w1 + 0.9 w2; a LoRA pair merges as W0 + B A."""
    root, _ = workspace
    config = TrainConfig(
        steps=1,
        learning_rate=1e-2,
        trainable="lora",
        lora_rank=2,
        ema_decay=0.1,
        save_every=1,
        validate_every=100,
        validation_steps=1,
        log_every=1,
        gradient_checkpointing=False,
    )
    run = tmp_path / "lora"
    train(root / "tiny", root / "data", run, config, cpu=True)
    live1 = load_file(str(run / "state" / "model.safetensors"))
    train(root / "tiny", root / "data", run, config.model_copy(update={"steps": 2}), cpu=True)
    live2 = load_file(str(run / "state" / "model.safetensors"))
    assert json.loads((run / "state" / "step.json").read_text()) == {"step": 2, "ema_steps": 2}

    def ema(key):
        return 0.1 * live1[key] + 0.9 * live2[key]

    saved = FactorPortraitPipeline.from_pretrained(str(run / "checkpoint-2"), use_safetensors=True)
    start = FactorPortraitPipeline.from_pretrained(str(root / "tiny"), use_safetensors=True)
    weights = saved.transformer.state_dict()
    assert not any("lora" in key for key in weights)  # merged: loads like any checkpoint
    merged = 0
    for name, weight in weights.items():
        base = f"transformer.{name[: -len('.weight')]}"
        if f"{base}.lora_A.default.weight" in live2:
            lora_a, lora_b = (ema(f"{base}.lora_{k}.default.weight") for k in "AB")
            expected = start.transformer.state_dict()[name] + lora_b @ lora_a  # alpha / r = 1
            assert torch.allclose(weight, expected, atol=1e-6), name
            merged += 1
    assert merged == 4 * 2 * len(saved.transformer.blocks)  # q, k, v, out of both attentions
    averaged = {
        f"transformer.{k}": v
        for k, v in weights.items()
        if k.startswith(("expression_controller.", "patch_embedding.weight"))
    }
    averaged.update(
        (f"expression_encoder.{k}", v)
        for k, v in saved.expression_encoder.state_dict().items()
        if k.startswith("head.")
    )
    # patch weights, the controller's, the head's (its two linear layers: the fixed input
    # statistics are in the config, not trained)
    assert len(averaged) == 1 + 6 + 4
    for key, value in averaged.items():
        assert torch.allclose(value, ema(key), atol=1e-6), key
        # ...which is not the live weights: the test sees whether the average was taken.
        assert (value - live2[key]).abs().max() > 1e-4 or torch.equal(live1[key], live2[key])
    head = "expression_encoder.head.1.weight"
    assert (averaged[head] - live2[head]).abs().max() > 1e-4
    # LoRA leaves Wan's channels of the patch embedding as they were.
    patch = saved.transformer.patch_embedding
    assert torch.equal(patch.weight[:, :16], start.transformer.patch_embedding.weight[:, :16])
    assert torch.equal(patch.bias, start.transformer.patch_embedding.bias)


def test_two_processes_train_in_step(workspace, tmp_path):
    """Data-parallel training with two processes through torchrun (what accelerate's multi-GPU
    launcher runs), on the CPU with gloo: every process's copy of the weights stays identical
    (gradients of the transformer AND the expression head are averaged), one process writes
    the log and the checkpoints, and the checkpoint loads."""
    import os
    import socket
    import subprocess
    import sys

    root, _ = workspace
    (tmp_path / "train.json").write_text(
        json.dumps(
            {
                "steps": 4,
                "trainable": "full",
                "learning_rate": 1e-3,
                "save_every": 2,
                "validate_every": 100,
                "log_every": 1,
                "gradient_checkpointing": False,
            }
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "factorportrait",
        *_train_arguments(root, tmp_path / "run", tmp_path / "train.json"),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # written once, by one process
    assert result.stdout.count("steps, last losses") == 1, result.stdout  # said once too
    spreads = [r["replica_spread"] for r in records if "replica_spread" in r]
    assert spreads == [0.0, 0.0], records
    trained = FactorPortraitPipeline.from_pretrained(
        str(tmp_path / "run" / "checkpoint-4"), use_safetensors=True
    )
    start = FactorPortraitPipeline.from_pretrained(str(root / "tiny"), use_safetensors=True)
    moved = [
        not torch.equal(a, b)
        for a, b in zip(
            trained.expression_encoder.head.parameters(),
            start.expression_encoder.head.parameters(),
            strict=True,
        )
    ]
    assert any(moved)


def test_bf16_mixed_precision_trains_and_saves_float32(workspace, tmp_path):
    """bf16 autocast through the CLI (on the CPU here; the same accelerate path as on a GPU;
    a process of its own, as accelerate's precision is fixed per process): finite losses,
    float32 master weights saved."""
    import subprocess
    import sys

    root, _ = workspace
    (tmp_path / "bf16.json").write_text(
        json.dumps(
            {
                "steps": 3,
                "learning_rate": 1e-3,
                "mixed_precision": "bf16",
                "save_every": 3,
                "validate_every": 100,
                "log_every": 1,
            }
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "factorportrait",
            *_train_arguments(root, tmp_path / "bf16", tmp_path / "bf16.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [
        json.loads(line)["loss"]
        for line in (tmp_path / "bf16" / "log.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 3 and all(np.isfinite(losses))
    saved = FactorPortraitPipeline.from_pretrained(
        str(tmp_path / "bf16" / "checkpoint-3"), use_safetensors=True
    )
    assert {p.dtype for p in saved.transformer.parameters()} == {torch.float32}


def _train_arguments(root, out, config):
    """``train`` on the workspace's tiny checkpoint and data, on the CPU."""
    return [
        "train",
        "--checkpoint",
        str(root / "tiny"),
        "--data",
        str(root / "data"),
        "--out",
        str(out),
        "--config",
        str(config),
        "--cpu",
    ]


def test_cached_features_belong_to_the_checkpoint_that_made_them(
    workspace, tmp_path, landmarker_path
):
    """Cached backbone features give the codes the crops give; data made with another VAE is
    refused; with another expression backbone, kept crops are used, else it is refused."""
    root, _ = workspace
    pipe = load_pipeline(root / "tiny", device="cpu")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text('{"id": "clip0", "video": "%s"}\n' % (root / "clip0.mp4"))
    _prepare_small(manifest, tmp_path / "data", pipe, landmarker_path, keep_crops=True)
    sample = {
        k: v[None] for k, v in load_file(str(tmp_path / "data/samples/clip0.safetensors")).items()
    }
    from_features = expression_codes(pipe.expression_encoder, sample)
    from_crops = expression_codes(
        pipe.expression_encoder, {k: v for k, v in sample.items() if k != "expression_features"}
    )
    assert torch.allclose(from_features, from_crops, atol=1e-5)

    config = TrainConfig(steps=1, save_every=1, validate_every=100, log_every=1)
    other_vae = make_tiny_checkpoint(tmp_path / "seed1", seed=1)
    with pytest.raises(InputError, match="made by another VAE"):
        train(other_vae, root / "data", tmp_path / "run-vae", config, cpu=True)
    # Same VAE, another backbone.
    other = FactorPortraitPipeline.from_pretrained(str(root / "tiny"), use_safetensors=True)
    with torch.no_grad():
        for parameter in other.expression_encoder.backbone.parameters():
            parameter.add_(0.01)
    other.save_pretrained(str(tmp_path / "other-backbone"), safe_serialization=True)
    with pytest.raises(InputError, match="another expression backbone and it kept no crops"):
        train(tmp_path / "other-backbone", root / "data", tmp_path / "run-a", config, cpu=True)
    samples = PreparedSamples(tmp_path / "data", "train")
    samples.check_made_by(component_digests(other), tmp_path / "data")
    assert samples.use_crops and "expression_features" not in samples[0]
    result = train(
        tmp_path / "other-backbone", tmp_path / "data", tmp_path / "run-b", config, cpu=True
    )
    assert result["steps"] == 1


@pytest.mark.parametrize(
    "variant", [{"use_normals": False}, {"code_type": "landmarks"}, {"code_type": "blendshapes"}]
)
def test_ablation_checkpoints_train_on_the_same_data(workspace, tmp_path, variant):
    """C2 (no normal maps) and C3 (landmarks) starts train on the prepared data as it is; C2
    really ignores the normal latents and C3 the image features."""
    from factorportrait.pipelines.checkpoints import tiny_pipeline

    root, _ = workspace
    pipe = tiny_pipeline(0, **variant)
    pipe.save_pretrained(str(tmp_path / "start"), safe_serialization=True)
    batch = {k: v[None] for k, v in PreparedSamples(root / "data", "train")[0].items()}
    objective = FlowMatchingObjective(pipe.transformer, pipe.expression_encoder)
    config = TrainConfig()

    full = tiny_pipeline(0)
    full_objective = FlowMatchingObjective(full.transformer, full.expression_encoder)

    def loss(b, model=objective):
        with torch.no_grad():
            return training_loss(model, b, config, torch.Generator().manual_seed(0), drop=False)

    ignored = "normal_latents" if "use_normals" in variant else "expression_features"
    changed = {**batch, ignored: torch.randn_like(batch[ignored])}
    assert torch.equal(loss(batch), loss(changed))
    # ...which the full model does not ignore.
    assert not torch.equal(loss(batch, full_objective), loss(changed, full_objective))
    result = train(
        tmp_path / "start",
        root / "data",
        tmp_path / "run",
        TrainConfig(steps=2, save_every=2, validate_every=2, log_every=1, validation_steps=1),
        cpu=True,
    )
    assert result["steps"] == 2 and all(np.isfinite(result["losses"]))
    saved = FactorPortraitPipeline.from_pretrained(
        str(tmp_path / "run" / "checkpoint-2"), use_safetensors=True
    )
    assert saved.transformer.config.use_normals == variant.get("use_normals", True)
    assert saved.expression_encoder.config.code_type == variant.get("code_type", "image")
    assert (tmp_path / "run" / "validation" / "step-000002.mp4").is_file()


def test_ema_resumes_from_its_saved_weights(workspace, tmp_path):
    """The EMA weights are saved with the run's state (safetensors) and a resumed run goes on
    averaging from them: without them it would restart the average from the live weights."""
    import shutil

    root, _ = workspace
    config = TrainConfig(
        steps=3,
        learning_rate=1e-2,
        trainable="new",
        ema_decay=0.9,
        save_every=3,
        validate_every=100,
        log_every=1,
        gradient_checkpointing=False,
    )
    train(root / "tiny", root / "data", tmp_path / "run", config, cpu=True)
    state = tmp_path / "run" / "state"
    assert (state / "ema.safetensors").is_file()
    assert json.loads((state / "step.json").read_text()) == {"step": 3, "ema_steps": 3}
    shutil.copytree(tmp_path / "run", tmp_path / "forgetful")
    (tmp_path / "forgetful" / "state" / "ema.safetensors").unlink()
    longer = config.model_copy(update={"steps": 6})
    for run in ("run", "forgetful"):
        train(root / "tiny", root / "data", tmp_path / run, longer, cpu=True)
    assert json.loads((state / "step.json").read_text())["ema_steps"] == 6
    heads = [
        FactorPortraitPipeline.from_pretrained(
            str(tmp_path / run / "checkpoint-6"), use_safetensors=True
        )
        .expression_encoder.head[1]
        .weight
        for run in ("run", "forgetful")
    ]
    assert not torch.allclose(heads[0], heads[1])


@pytest.fixture(scope="module")
def c1_run(workspace, tmp_path_factory):
    """A `new`-layers run on prepared data whose index says which samples the C1 filter
    (threshold 0.5 here) must leave out: the two whose expression changes by more than 0.5
    AND whose camera moves. Their files do not exist, so a run that used them would fail; a
    batch of 3 over 2 steps reads every sample that is left."""
    import contextlib
    import io
    import shutil

    root, _ = workspace
    data = tmp_path_factory.mktemp("c1") / "data"
    shutil.copytree(root / "data" / "samples", data / "samples")
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (root / "data" / "index.jsonl").read_text().splitlines()
    }

    def row(sample_id, source, expression, camera, file=None):
        return {
            **rows[source],
            "id": sample_id,
            "file": file or rows[source]["file"],
            "expression_change": expression,
            "has_camera_change": camera,
        }

    index = [
        row("camera-only", "clip0", "0.1000", "true"),  # kept: the expression barely changes
        row("expression-only", "clip1", "0.9000", "false"),  # kept: the camera stays
        row("at-threshold", "clip0", "0.5000", "true"),  # kept: not more than 0.5
        row("combined-a", "clip1", "0.5001", "true", "samples/gone-a.safetensors"),
        row("combined-b", "clip0", "0.9000", "true", "samples/gone-b.safetensors"),
        rows["clip2"],  # validation
    ]
    (data / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    config = TrainConfig(
        steps=2,
        batch_size=3,
        learning_rate=1e-2,
        trainable="new",
        exclude_combined_changes=True,
        expression_change_threshold=0.5,
        save_every=2,
        validate_every=2,
        validation_steps=1,
        log_every=1,
        gradient_checkpointing=False,
    )
    out = data.parent / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train(root / "tiny", data, out, config, cpu=True)
    return data, out, result, printed.getvalue()


def test_c1_filter_leaves_out_combined_changes_in_train(c1_run):
    data, out, result, printed = c1_run
    assert "3 training samples, 2 left out by the C1 filter, 1 validation" in printed
    assert result["steps"] == 2 and all(np.isfinite(result["losses"]))
    # Without the filter the same index holds all five (and the run would read the missing
    # files), and with the default threshold (0.3) "at-threshold" goes too.
    assert len(PreparedSamples(data, "train")) == 5
    default = PreparedSamples(data, "train", exclude_combined=True)
    assert [r["id"] for r in default.rows] == ["camera-only", "expression-only"]


def test_new_layers_train_only_the_new_input_channels(workspace, c1_run):
    """trainable="new": after the optimiser's steps, Wan's weights (every block, the noise
    channels 0-15 of the patch embedding and its bias) are bit-identical to the start; the
    new condition channels, the expression controller and the head have moved."""
    root, _ = workspace
    _, out, _, _ = c1_run
    start = FactorPortraitPipeline.from_pretrained(str(root / "tiny"), use_safetensors=True)
    saved = FactorPortraitPipeline.from_pretrained(str(out / "checkpoint-2"), use_safetensors=True)
    before, after = start.transformer.state_dict(), saved.transformer.state_dict()
    assert torch.equal(
        after["patch_embedding.weight"][:, :16], before["patch_embedding.weight"][:, :16]
    )
    new_channels = (
        after["patch_embedding.weight"][:, 16:] - before["patch_embedding.weight"][:, 16:]
    )
    per_channel = new_channels.abs().amax(dim=(0, 2, 3, 4))
    # Every reference and normal channel learns; of the rays, those not zero in this data
    # (a still camera leaves some Plücker components at zero: no gradient there).
    assert (per_channel[:32] > 0).all() and (per_channel[32:] > 0).any()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"patch_embedding.weight"} | {
        k for k in before if k.startswith("expression_controller.")
    }
    heads = zip(
        saved.expression_encoder.head.parameters(),
        start.expression_encoder.head.parameters(),
        strict=True,
    )
    assert all(not torch.equal(a, b) for a, b in heads)


def test_validation_video_is_the_labelled_generation(workspace, c1_run):
    """validation/step-N.mp4 is the generation of the weights of step N (validation_steps
    steps, guidance 1, seed 0) at the prepared size and frame count, in order, with the untrained
    banner burnt in: its top band darkened, the rest the generated frames within the codec's
    error. (The tiny random model's output hardly depends on its conditions or seed, so this
    cannot tell which sample or seed was used: other conditions change it by < 3 levels.)"""
    from factorportrait.io.media import read_video

    root, _ = workspace
    data, out, _, _ = c1_run
    video = read_video(out / "validation" / "step-000002.mp4")
    assert video.frames.shape == (5, 32, 32, 3)
    assert video.declared_fps == pytest.approx(8)
    pipe = FactorPortraitPipeline.from_pretrained(str(out / "checkpoint-2"), use_safetensors=True)
    sample = {k: v[None] for k, v in PreparedSamples(data, "val")[0].items()}
    frames = pipe(
        condition_latents={
            "reference_latents": sample["reference_latents"],
            "ray_latents": sample["ray_latents"],
            "normal_latents": sample["normal_latents"],
            "expression_codes": expression_codes(pipe.expression_encoder, sample),
        },
        num_inference_steps=1,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    expected = (frames.clip(0, 1) * 255).astype(np.float64)
    decoded = video.frames.astype(np.float64)
    band = 12  # the banner: max(12, height // 14) rows
    below = np.abs(decoded[:, band:] - expected[:, band:]).mean()
    other = np.abs(decoded[:, band:] - expected[::-1, band:]).mean()  # frames out of order
    print(f"below the band: {below:.1f} (frames reversed: {other:.1f})")
    assert below < 12
    # The banner darkens the band to a quarter (plus a little text).
    assert decoded[:, :band].mean() < 0.5 * expected[:, :band].mean()


def test_every_checkpoint_records_the_ranges_its_training_samples_cover(workspace, tmp_path):
    """trained_ranges.json in each checkpoint folder: from the lowest minimum to the highest
    maximum of the training samples left after the C1 filter, so a sample the filter leaves out
    or a validation sample, however far it reaches, is not in it. One sample is prepare's own
    (a clip rocking in the image plane: the head barely turns, the camera stands still at our
    30-degree field of view); the others carry ranges written here, so the answer is known."""
    import shutil

    from factorportrait.config import CAMERA
    from factorportrait.planning.guardrails import (
        TrainedRanges,
        load_trained_ranges,
        ranges_from_samples,
    )

    root, _ = workspace
    data = tmp_path / "data"
    shutil.copytree(root / "data" / "samples", data / "samples")
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (root / "data" / "index.jsonl").read_text().splitlines()
    }
    rocking = rows["clip0"]

    def spans(yaw, pitch, azimuth, elevation, distance, fov):
        names = ("head_yaw_deg", "head_pitch_deg", "camera_azimuth_deg", "camera_elevation_deg")
        values = dict(zip(names, (yaw, pitch, azimuth, elevation), strict=True))
        values["camera_distance_ratio"] = distance
        row = {
            f"{name}_{end}": f"{v:.3f}"
            for name, pair in values.items()
            for end, v in zip(("min", "max"), pair, strict=True)
        }
        return {**row, "fov_deg": f"{fov:.3f}"}

    far = spans((-80, 80), (-60, 60), (-90, 90), (-45, 45), (0.3, 3.0), 70)
    index = [
        rocking,
        {
            **rows["clip1"],
            "id": "turned",
            **spans((-20, 15), (-10, 5), (-30, 25), (-5, 12), (0.8, 1.25), 40),
        },
        {  # left out by the C1 filter (its file does not exist: a run that read it would fail)
            **rows["clip1"],
            **far,
            "id": "combined",
            "file": "samples/gone.safetensors",
            "expression_change": "0.9000",
            "has_camera_change": "true",
        },
        {**rows["clip2"], **far},  # validation
    ]
    (data / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    # What prepare recorded for the rocking clip lies inside the "turned" sample's spans, so
    # the ranges are those spans, with the field of view from 30 (our camera) to 40.
    assert float(rocking["fov_deg"]) == pytest.approx(CAMERA.fov_deg) == 30
    assert -20 < float(rocking["head_yaw_deg_min"]) <= float(rocking["head_yaw_deg_max"]) < 15
    assert -10 < float(rocking["head_pitch_deg_min"]) <= float(rocking["head_pitch_deg_max"]) < 5
    for name in ("camera_azimuth_deg", "camera_elevation_deg"):
        assert float(rocking[f"{name}_min"]) == float(rocking[f"{name}_max"]) == 0
    assert float(rocking["camera_distance_ratio_min"]) == pytest.approx(1)
    assert float(rocking["camera_distance_ratio_max"]) == pytest.approx(1)
    expected = TrainedRanges(
        head_yaw_deg=(-20, 15),
        head_pitch_deg=(-10, 5),
        camera_azimuth_deg=(-30, 25),
        camera_elevation_deg=(-5, 12),
        camera_distance_ratio=(0.8, 1.25),
        fov_deg=(30, 40),
    )
    config = TrainConfig(
        steps=2,
        batch_size=2,
        trainable="new",
        exclude_combined_changes=True,
        save_every=1,
        validate_every=2,
        validation_steps=1,
        gradient_checkpointing=False,
    )
    train(root / "tiny", data, tmp_path / "run", config, cpu=True)
    trained_on = PreparedSamples(data, "train", exclude_combined=True).rows
    assert [row["id"] for row in trained_on] == ["clip0", "turned"]
    for step in (1, 2):
        recorded = load_trained_ranges(tmp_path / "run" / f"checkpoint-{step}")
        assert recorded == expected == ranges_from_samples(trained_on), step
        # The rocking clip's own values are inside (prepare's values, not the ones made here).
        for name, (low_key, high_key) in (
            ("head_yaw_deg", ("head_yaw_deg_min", "head_yaw_deg_max")),
            ("head_pitch_deg", ("head_pitch_deg_min", "head_pitch_deg_max")),
            ("fov_deg", ("fov_deg", "fov_deg")),
        ):
            low, high = getattr(recorded, name)
            assert low <= float(rocking[low_key]) <= float(rocking[high_key]) <= high, name


def _prepare_small(manifest, out, pipeline, landmarker, **options):
    """``prepare`` at the tests' size: 5 frames of 32x32 at 8 fps."""
    return prepare(
        manifest, out, pipeline, frames=5, size=32, fps=8.0, landmarker=landmarker, **options
    )


def test_validation_uses_the_ema_weights_as_checkpoints_do(workspace, tmp_path, monkeypatch):
    """With EMA on, validation videos are made with the EMA weights, as checkpoints are (they
    used to be made with the live weights): here, at a step that both saves and validates,
    the very weights of its checkpoint."""
    import factorportrait.training.loop as loop

    seen = []

    def remember_the_weights(pipe, *args, **kwargs):
        seen.append(pipe.expression_encoder.head[1].weight.detach().clone())

    monkeypatch.setattr(loop, "validate", remember_the_weights)
    root, _ = workspace
    config = TrainConfig(
        steps=2,
        learning_rate=1e-2,
        trainable="new",
        ema_decay=0.9,
        save_every=2,
        validate_every=2,
        log_every=1,
        gradient_checkpointing=False,
    )
    run = tmp_path / "run"
    train(root / "tiny", root / "data", run, config, cpu=True)
    assert len(seen) == 1
    saved = FactorPortraitPipeline.from_pretrained(str(run / "checkpoint-2"), use_safetensors=True)
    live = load_file(str(run / "state" / "model.safetensors"))["expression_encoder.head.1.weight"]
    assert torch.equal(seen[0], saved.expression_encoder.head[1].weight)
    assert (seen[0] - live).abs().max() > 1e-4  # the average, not the live weights
