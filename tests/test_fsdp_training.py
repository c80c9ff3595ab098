"""Sharded training (issue 32): accelerate's FSDP2 over two gloo processes on the CPU trains the
tiny model to a checkpoint, resumes it, and matches one process training the same global batch;
what FSDP1 and DeepSpeed still refuse; noise drawn alike for any number of processes.

accelerate 1.16 does not shard on the CPU (it trains data parallel there, silently):
``FACTORPORTRAIT_FSDP_ON_CPU=1`` marks its state FSDP so its own FSDP2 path runs over gloo
(``training/sharding.py``). Nothing here ran on GPUs.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from factorportrait.errors import InputError
from factorportrait.training.config import TrainConfig

pytestmark = [pytest.mark.training]

# Measured on this CPU: the two-process losses and weights agree with one process to 1.2e-7
# (float32 reductions in another order); the bounds leave room for other CPUs.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, landmarker_path):
    """The tiny checkpoint and three prepared clips (two train, one validation), as
    test_training's workspace makes them."""
    from factorportrait.io import write_video
    from factorportrait.io.media import read_image
    from factorportrait.pipelines.checkpoints import make_tiny_checkpoint
    from factorportrait.pipelines.generation import load_pipeline
    from factorportrait.training.prepare import prepare

    root = tmp_path_factory.mktemp("fsdp")
    photo = read_image("assets/example_portrait.jpg")
    lines = []
    for k in range(3):
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
    (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    make_tiny_checkpoint(root / "tiny", seed=0)
    pipeline = load_pipeline(root / "tiny", device="cpu")
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


def _config(path: Path, steps: int, batch_size: int) -> Path:
    """LoRA (so Wan's channels of the patch embedding are masked) with EMA, gradient
    checkpointing, a save every 2 steps and a validation video at step 4."""
    path.write_text(
        json.dumps(
            {
                "steps": steps,
                "batch_size": batch_size,
                "trainable": "lora",
                "lora_rank": 4,
                "ema_decay": 0.9,
                "learning_rate": 1e-3,
                "save_every": 2,
                "validate_every": 4,
                "validation_steps": 2,
                "log_every": 1,
            }
        )
    )
    return path


def _torchrun_fsdp(root: Path, out: Path, config: Path) -> subprocess.CompletedProcess:
    """``train`` in two processes as ``accelerate launch --use_fsdp --fsdp_version 2
    --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP`` sets them up, on the CPU."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
        "FACTORPORTRAIT_FSDP_ON_CPU": "1",
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        "-m",
        "factorportrait",
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
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    weights = {}
    for part in ("transformer", "expression_encoder"):
        for file in sorted((folder / part).glob("*.safetensors")):
            weights.update({f"{part}.{k}": v for k, v in load_file(file).items()})
    return weights


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_fsdp2_on_two_processes_trains_resumes_and_matches_one_process(workspace, tmp_path):
    """Two FSDP2 processes of batch 1 train 2 steps to a checkpoint, a second launch resumes to
    step 4; one process of batch 2 trains the 4 steps at once. The losses and the final
    checkpoint (the EMA weights, LoRA merged) agree within the stated tolerances; the run
    really was sharded (accelerate's FSDP state files), Wan's channels of the patch embedding
    did not move, and the validation video was made from the gathered weights."""
    from factorportrait.training.loop import train

    root = workspace
    sharded = tmp_path / "sharded"
    first = _torchrun_fsdp(root, sharded, _config(tmp_path / "two-2.json", 2, 1))
    assert "FSDP2 on 2 CPU processes" in first.stdout
    assert (sharded / "checkpoint-2").is_dir()
    # accelerate's FSDP save (a sharded torch.distributed.checkpoint), not DDP's model file.
    assert (sharded / "state" / "pytorch_model_fsdp_0").is_dir()
    assert not (sharded / "state" / "model.safetensors").exists()
    assert (sharded / "state" / "ema.safetensors").is_file()
    _torchrun_fsdp(root, sharded, _config(tmp_path / "two-4.json", 4, 1))
    steps = [json.loads(line)["step"] for line in (sharded / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # written once, by one process
    assert (sharded / "validation" / "step-000004.mp4").is_file()

    single = tmp_path / "single"
    result = train(
        root / "tiny",
        root / "data",
        single,
        TrainConfig.model_validate_json(_config(tmp_path / "one.json", 4, 2).read_text()),
        cpu=True,
    )
    assert result["processes"] == 1
    assert np.allclose(_losses(sharded), _losses(single), rtol=0, atol=LOSS_TOLERANCE), (
        _losses(sharded),
        _losses(single),
    )
    two, one = _weights(sharded / "checkpoint-4"), _weights(single / "checkpoint-4")
    start = _weights(root / "tiny")
    assert two.keys() == one.keys() == start.keys()
    gap = max((two[k] - one[k]).abs().max().item() for k in one)
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    assert gap <= WEIGHT_TOLERANCE < moved, (gap, moved)
    patch = "transformer.patch_embedding.weight"
    assert torch.equal(two[patch][:, :16], start[patch][:, :16])
    assert not torch.equal(two[patch][:, 16:], start[patch][:, 16:])


@pytest.mark.slow
def test_a_run_resumed_mid_epoch_goes_on_as_an_uninterrupted_one(workspace, tmp_path):
    """One process of batch 1 (two batches an epoch) stopped at step 3 and resumed to 5 takes
    the losses an uninterrupted run of 5 takes, exactly: the epoch's order (accelerate's
    seedable sampler) less the batch already trained on, and the step's noise."""
    from factorportrait.training.loop import train

    def run(out, steps):
        config = dict(steps=steps, trainable="full", learning_rate=1e-3, save_every=3)
        config.update(validate_every=100, log_every=1, gradient_checkpointing=False)
        train(workspace / "tiny", workspace / "data", out, TrainConfig(**config), cpu=True)

    run(tmp_path / "whole", 5)
    run(tmp_path / "resumed", 3)
    run(tmp_path / "resumed", 5)
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "whole")


def test_fsdp1_and_deepspeed_still_refuse_ema_and_frozen_channels():
    from accelerate.utils import DistributedType

    from factorportrait.training.sharding import refuse_under_sharding

    def accelerator(kind, version=None):
        plugin = SimpleNamespace(fsdp_version=version)
        return SimpleNamespace(distributed_type=kind, state=SimpleNamespace(fsdp_plugin=plugin))

    fsdp1 = accelerator(DistributedType.FSDP, 1)
    with pytest.raises(InputError, match="ema_decay: the EMA of FSDP1"):
        refuse_under_sharding(fsdp1, TrainConfig(trainable="full", ema_decay=0.99))
    with pytest.raises(InputError, match="trainable 'new'.*FSDP1"):
        refuse_under_sharding(fsdp1, TrainConfig(trainable="new"))
    with pytest.raises(InputError, match="trainable 'lora'.*DeepSpeed"):
        refuse_under_sharding(accelerator(DistributedType.DEEPSPEED), TrainConfig(trainable="lora"))
    refuse_under_sharding(fsdp1, TrainConfig(trainable="full"))  # what FSDP1 can do
    for fine in (accelerator(DistributedType.FSDP, 2), accelerator(DistributedType.MULTI_CPU)):
        refuse_under_sharding(fine, TrainConfig(trainable="new", ema_decay=0.99))


def test_fsdp_asked_on_the_cpu_says_it_runs_data_parallel(monkeypatch):
    """accelerate trains data parallel when FSDP is asked for on the CPU: said, not silent."""
    from accelerate.utils import DistributedType

    from factorportrait.training.sharding import fsdp_on_cpu

    cpu = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert fsdp_on_cpu(cpu, "no") is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.delenv("FACTORPORTRAIT_FSDP_ON_CPU", raising=False)
    assert "this run is data parallel" in fsdp_on_cpu(cpu, "no")
    gpu = SimpleNamespace(distributed_type=DistributedType.FSDP)
    assert fsdp_on_cpu(gpu, "no") is None


def test_noise_is_drawn_alike_for_any_number_of_processes():
    """Each sample's draws depend on the step and its place in the global batch: one process's
    batch of 2 draws what two processes' batches of 1 draw, and the step changes them."""
    from factorportrait.training.loop import sample_randomness

    config = TrainConfig(drop_expression=0.5, drop_reference=0.5)
    batch = {"target_latents": torch.zeros(2, 16, 2, 4, 4)}
    noise, sigma, keep = sample_randomness(batch, config, step=3, first=0)
    halves = [
        sample_randomness({"target_latents": batch["target_latents"][i : i + 1]}, config, 3, i)
        for i in range(2)
    ]
    assert torch.equal(noise, torch.cat([h[0] for h in halves]))
    assert torch.equal(sigma, torch.cat([h[1] for h in halves]))
    assert keep.keys() == {"expression", "reference"}
    for name in keep:
        assert torch.equal(keep[name], torch.cat([h[2][name] for h in halves]))
    assert not torch.equal(noise[0], noise[1])
    assert not torch.equal(noise, sample_randomness(batch, config, step=4, first=0)[0])
