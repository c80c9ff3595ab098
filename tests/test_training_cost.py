"""The training-cost figures: the arithmetic estimate counts what the real models hold and
the FLOPs torch counts; the measurement runs real optimiser steps. (No timing assertions:
figures are printed by `python -m factorportrait bench-training`.)"""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from factorportrait.pipelines.checkpoints import tiny_pipeline
from factorportrait.training.config import TrainConfig
from factorportrait.training.cost import (
    estimate_training_step,
    forward_flops,
    latent_shape,
    measure_training_step,
    synthetic_batch,
)
from factorportrait.training.loop import FlowMatchingObjective, select_parameters, training_loss


def _counted_by_hand(trainable: str, lora_rank: int = 16) -> tuple[int, int]:
    """(all parameters, trained elements) of the tiny model, from an instantiated model's own
    modules: `new` trains the patch embedding's weights on the 56 new condition channels (not
    Wan's 16 noise channels, nor its bias), the expression controller and the expression head;
    `lora` adds rank x (in + out) for q, k, v and out of both attentions of every block;
    `full` trains the whole transformer and the head (never the frozen backbone)."""
    pipe = tiny_pipeline(0)
    transformer, encoder = pipe.transformer, pipe.expression_encoder
    in_transformer = sum(p.numel() for p in transformer.parameters())
    total = in_transformer + sum(p.numel() for p in encoder.parameters())
    head = sum(p.numel() for p in encoder.head.parameters())
    controller = sum(p.numel() for p in transformer.expression_controller.parameters())
    out_channels, in_channels, *kernel = transformer.patch_embedding.weight.shape
    assert in_channels == 16 + 16 + 16 + 24  # noise, reference, normals, rays
    new_channels = out_channels * (in_channels - 16) * math.prod(kernel)
    lora = sum(
        lora_rank * (linear.in_features + linear.out_features)
        for block in transformer.blocks
        for attention in (block.attn1, block.attn2)
        for linear in (attention.to_q, attention.to_k, attention.to_v, attention.to_out[0])
    )
    return {
        "full": (total, in_transformer + head),
        "new": (total, new_channels + controller + head),
        "lora": (total + lora, new_channels + controller + head + lora),
    }[trainable]


@pytest.mark.parametrize("trainable", ["full", "lora", "new"])
def test_estimate_counts_match_the_models_a_real_step_trains(trainable):
    """The estimate (meta device) and the measurement (real steps) count the parameters an
    instantiated model holds and the elements it trains, counted here independently."""
    total, trained = _counted_by_hand(trainable)
    estimate = estimate_training_step("tiny", 9, 64, 64, trainable)
    measured = measure_training_step("tiny", 9, 64, 64, trainable, steps=2)
    assert estimate["parameters"] == measured["parameters"] == total
    assert estimate["trainable"] == measured["trainable"] == trained
    assert all(math.isfinite(loss) for loss in measured["losses"])
    assert len(measured["seconds"]) == 2 and measured["peak_gib"] is None  # CPU: no CUDA peak


@pytest.mark.parametrize("trainable", ["full", "lora", "new"])
def test_step_flops_agree_with_torch_flop_counter(trainable):
    """The estimate's FLOPs per training step against torch's FLOP counter over a real step
    run here (forward, backward with gradient checkpointing's recompute, as `train` runs it):
    attention's backward costs twice its forward even where no weight trains."""
    pipe = tiny_pipeline(0)
    select_parameters(pipe.transformer, pipe.expression_encoder, trainable)
    pipe.transformer.enable_gradient_checkpointing()
    objective = FlowMatchingObjective(pipe.transformer, pipe.expression_encoder).train()
    generator = torch.Generator().manual_seed(0)
    features = pipe.expression_encoder.head[0].normalized_shape[0]
    batch = synthetic_batch(9, 128, 128, features, generator)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        training_loss(objective, batch, TrainConfig(), generator).backward()
    estimate = estimate_training_step("tiny", 9, 128, 128, trainable)
    assert estimate["step_tflop"] * 1e12 == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_forward_flops_agree_with_torch_flop_counter():
    """At 17x256x256 (1,536 tokens with the reference slot) attention and the block's linear maps dominate, as at the
    real size; torch's counter sees every matmul, so the two must agree closely."""
    transformer = tiny_pipeline(0).transformer.eval()
    t, h, w = latent_shape(17, 256, 256)
    # 5 latent frames and the reference slot go in (1,536 tokens); 5 come out (1,280).
    tokens, output_tokens = (t + 1) * (h // 2) * (w // 2), t * (h // 2) * (w // 2)
    generator = torch.Generator().manual_seed(0)
    inputs = dict(
        reference_latents=torch.randn(1, 16, 1, h, w, generator=generator),
        ray_latents=torch.randn(1, 24, t, h, w, generator=generator),
        normal_latents=torch.randn(1, 16, t, h, w, generator=generator),
        expression_codes=torch.randn(
            1, t, transformer.config.expression_code_dim, generator=generator
        ),
    )
    counter = FlopCounterMode(display=False)
    # The math attention backend: torch's counter has no formula for the CPU's fused kernel.
    with torch.no_grad(), counter, sdpa_kernel(SDPBackend.MATH):
        transformer(
            torch.randn(1, 16, t, h, w, generator=generator), torch.tensor([500.0]), **inputs
        )
    counted = counter.get_total_flops()
    assert forward_flops(transformer, tokens, output_tokens) == pytest.approx(counted, rel=0.01)


def test_the_real_size_estimate_is_in_the_expected_range():
    """1.3B at 49x512x512: the figures the README quotes, from the model built on the meta
    device (exact counts), so a change to the architecture shows up here."""
    full = estimate_training_step("1.3b", 49, 512, 512, "full")
    new = estimate_training_step("1.3b", 49, 512, 512, "new")
    assert full["tokens"] == (13 + 1) * 32 * 32  # 13 latent frames and the reference slot
    # Wan2.1-1.3B's 1.419 B + the new layers, and a DINOv2-base-sized encoder (86 M).
    assert full["parameters"] == pytest.approx(1.423e9 + 86.2e6, rel=0.01)
    assert full["gpu_gib"] > 2 * new["gpu_gib"] and full["step_tflop"] > new["step_tflop"]


def test_bench_training_command(tmp_path, capsys):
    import json

    from factorportrait.cli import main

    code = main(
        [
            "bench-training",
            "--model",
            "tiny",
            "--frames",
            "9",
            "--size",
            "64",
            "--steps",
            "1",
            "--device",
            "cpu",  # explicit: "auto" picks CUDA where there is one
            "--json",
            str(tmp_path / "cost.json"),
        ]
    )
    assert code == 0
    rows = json.loads((tmp_path / "cost.json").read_text())
    assert [r["trainable_mode"] for r in rows] == ["full", "lora", "new"]
    assert all(len(r["measured"]["seconds"]) == 1 for r in rows)
    assert "measured on cpu" in capsys.readouterr().out
    assert main(["bench-training", "--steps", "0"]) == 2  # a clear error, not a traceback
