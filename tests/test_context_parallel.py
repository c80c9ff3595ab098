"""Generation split over two processes with diffusers' context parallelism (issue 32), on the CPU
with gloo: the tiny FactorPortrait transformer (both modulations, with and without expression
codes), the tiny FactorPortrait pipeline end to end, and the tiny Wan2.2-Animate transformer,
each against one process. Ulysses only: ring attention needs a GPU attention backend (the
refusal is checked here too). This file is also the worker torchrun starts
(``python -m torch.distributed.run --nproc_per_node=2 tests/test_context_parallel.py OUT``).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

# Measured on this CPU: 0.0 (bit-identical) for the transformers and the pipeline; Ulysses
# changes only how heads are grouped per matmul, so another CPU or BLAS may round differently.
TOLERANCE = 1e-5
T = 3  # latent frames: 1 + 3 = 4 slots, split 2 ways


def _factorportrait_inputs(transformer):
    g = torch.Generator().manual_seed(0)
    shape = (1, 16, T, 4, 4)
    return dict(
        hidden_states=torch.randn(shape, generator=g),
        timestep=torch.tensor([500.0]),
        reference_latents=torch.randn(1, 16, 1, 4, 4, generator=g),
        ray_latents=torch.randn(1, 24, T, 4, 4, generator=g),
        normal_latents=torch.randn(shape, generator=g),
        expression_codes=torch.randn(1, T, transformer.config.expression_code_dim, generator=g),
    )


def _factorportrait_outputs(parallel: bool) -> dict[str, torch.Tensor]:
    """The tiny transformer's output for each variant, and the tokens its first block saw."""
    from factorportrait.pipelines.checkpoints import tiny_pipeline
    from factorportrait.pipelines.parallel import enable_context_parallel

    outputs = {}
    for modulation in ("per_token", "per_frame"):
        transformer = tiny_pipeline(0, modulation=modulation).transformer.eval()
        seen = []
        transformer.blocks[0].attn1.register_forward_pre_hook(
            lambda _m, args, seen=seen: seen.append(args[0].shape[1])
        )
        if parallel:
            enable_context_parallel(transformer, "ulysses")
        for codes in (True, False):
            inputs = _factorportrait_inputs(transformer)
            if not codes:
                inputs["expression_codes"] = None
            with torch.no_grad():
                out = transformer(**inputs).sample
            outputs[f"{modulation}.codes={codes}"] = out
        outputs[f"{modulation}.tokens"] = torch.tensor(seen)
    return outputs


def _pipeline_frames(parallel: bool) -> torch.Tensor:
    """The tiny pipeline end to end (2 steps, guidance 2: the conditioned and unconditioned
    passes), frames as decoded."""
    from factorportrait.pipelines.checkpoints import tiny_pipeline
    from factorportrait.pipelines.parallel import enable_context_parallel

    pipe = tiny_pipeline(0)
    if parallel:
        enable_context_parallel(pipe.transformer, "ulysses")
    inputs = _factorportrait_inputs(pipe.transformer)
    latents = {
        "reference_latents": inputs["reference_latents"],
        "ray_latents": inputs["ray_latents"],
        "normal_latents": inputs["normal_latents"],
        "expression_codes": inputs["expression_codes"],
    }
    frames = pipe(
        condition_latents=latents,
        num_inference_steps=2,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    return torch.as_tensor(frames)


def _wan_animate_output(parallel: bool) -> torch.Tensor:
    from diffusers.models import WanAnimateTransformer3DModel

    from factorportrait.engines.wan_animate.loading import TINY_TRANSFORMER_CONFIG
    from factorportrait.pipelines.parallel import enable_context_parallel

    torch.manual_seed(0)
    transformer = WanAnimateTransformer3DModel(**TINY_TRANSFORMER_CONFIG).eval()
    if parallel:
        enable_context_parallel(transformer, "ulysses")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, 36, T + 1, 4, 4, generator=g),
            timestep=torch.tensor([500]),
            encoder_hidden_states=torch.randn(1, 8, 16, generator=g),
            encoder_hidden_states_image=torch.randn(1, 4, 8, generator=g),
            pose_hidden_states=torch.randn(1, 16, T, 4, 4, generator=g),
            face_pixel_values=torch.randn(1, 3, 4 * (T - 1) + 1, 64, 64, generator=g),
        ).sample


def _worker(out: Path) -> None:
    from factorportrait.pipelines.parallel import init_distributed

    rank, _ = init_distributed()
    results = _factorportrait_outputs(parallel=True)
    results["pipeline"] = _pipeline_frames(parallel=True)
    results["wan_animate"] = _wan_animate_output(parallel=True)
    save_file({k: v.contiguous() for k, v in results.items()}, str(out / f"rank{rank}.st"))
    try:
        from factorportrait.pipelines.parallel import enable_context_parallel

        enable_context_parallel(_tiny_transformer(), "ring")
    except Exception as exc:  # the refusal, recorded for the test to read
        (out / f"ring{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
    torch.distributed.destroy_process_group()


def _tiny_transformer():
    from factorportrait.pipelines.checkpoints import tiny_pipeline

    return tiny_pipeline(0).transformer


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("context-parallel")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            __file__,
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return [load_file(str(out / f"rank{r}.st")) for r in (0, 1)], out


@pytest.mark.slow
def test_two_processes_compute_the_factorportrait_transformer_as_one(two_processes):
    ranks, _ = two_processes
    one = _factorportrait_outputs(parallel=False)
    for modulation in ("per_token", "per_frame"):
        # The split really happened: each process's first block saw half the tokens.
        full = int(one[f"{modulation}.tokens"][0])
        assert full == (1 + T) * 2 * 2
        for rank in ranks:
            assert rank[f"{modulation}.tokens"].tolist() == [full // 2, full // 2]
        for codes in (True, False):
            key = f"{modulation}.codes={codes}"
            for rank in ranks:
                assert rank[key].shape == one[key].shape
                gap = (rank[key] - one[key]).abs().max().item()
                assert gap <= TOLERANCE, (key, gap)


@pytest.mark.slow
def test_two_processes_generate_the_frames_one_process_does(two_processes):
    ranks, _ = two_processes
    one = _pipeline_frames(parallel=False)
    assert one.abs().max() > 0
    for rank in ranks:
        assert (rank["pipeline"] - one).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_two_processes_compute_the_wan_animate_transformer_as_one(two_processes):
    ranks, _ = two_processes
    one = _wan_animate_output(parallel=False)
    for rank in ranks:
        assert (rank["wan_animate"] - one).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_ring_attention_is_refused_on_the_cpu(two_processes):
    _, out = two_processes
    for rank in (0, 1):
        assert "ring attention needs an attention backend" in (out / f"ring{rank}.txt").read_text()


@pytest.mark.slow
def test_generate_parallel_writes_the_video_generate_writes(pyfeat, tmp_path):
    """The command: two processes (torchrun) write the same video, byte for byte, as
    ``generate`` in one process; only the first process writes."""
    from factorportrait.pipelines.checkpoints import make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path / "tiny", seed=0)
    request = [
        "--checkpoint", str(tmp_path / "tiny"), "--portrait", str(pyfeat / "single_face.jpg"),
        "--driving", str(pyfeat / "single_face.mp4"), "--mode", "novel-dynamic",
        "--frames", "9", "--size", "64", "--steps", "2", "--seed", "7", "--device", "cpu",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "factorportrait", "generate", *request, "--out", "one.mp4"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "split").mkdir()
    two = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "factorportrait.cli.parallel",
            *request, "--out", "two.mp4",
        ],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path / "split",
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert "context parallel over 2 processes: ring 1, ulysses 2" in two.stdout
    assert two.stdout.count("-> two.mp4") == 1  # printed and written by the first process
    assert [p.name for p in (tmp_path / "split").iterdir()] == ["two.mp4"]
    assert (tmp_path / "split" / "two.mp4").read_bytes() == (tmp_path / "one.mp4").read_bytes()


def test_uneven_splits_and_a_missing_launcher_are_refused(monkeypatch):
    from factorportrait.errors import InputError
    from factorportrait.pipelines.parallel import check_slots, cp_plan, init_distributed

    check_slots(16, 8)
    with pytest.raises(InputError, match="14 latent slots"):
        check_slots(14, 4)
    monkeypatch.delenv("RANK", raising=False)
    if not torch.distributed.is_initialized():
        with pytest.raises(InputError, match="torchrun"):
            init_distributed()
    plan = cp_plan(_tiny_transformer())
    assert "blocks.1" in plan and "proj_out" not in plan  # gathered before the slot is dropped


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
