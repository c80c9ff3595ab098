"""What ``train`` saves: checkpoints in the pipeline's own from_pretrained format (the EMA
weights when EMA is on, LoRA merged in) with the ranges the training data covered, and the EMA
weights beside accelerate's resumable state (README: Training)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError
from ..pipelines.pipeline_factorportrait import FactorPortraitPipeline
from ..planning.guardrails import TrainedRanges, save_trained_ranges
from .sharding import full_tensor, is_dtensor, shard_like


def save_checkpoint(
    pipe: FactorPortraitPipeline, folder: Path, status: str, ranges: TrainedRanges
) -> None:
    """Write a trained pipeline, labelled with its training status, and the trained ranges
    (``trained_ranges.json``) that ``preview``, ``generate`` and the demo warn against."""
    pipe.transformer.register_to_config(training_status=status)
    pipe.save_pretrained(str(folder), safe_serialization=True)
    save_trained_ranges(ranges, folder)


def trained_pipeline(accelerator, objective, pipe, ema, params) -> FactorPortraitPipeline | None:
    """The trained weights as a plain pipeline (main process; None elsewhere), built from
    accelerate's full state dict so it is right under DDP and FSDP alike; the EMA weights when
    EMA is on; LoRA merged in, so it loads like any checkpoint."""
    with ema_weights(ema, params):
        state = accelerator.get_state_dict(objective)  # collective under FSDP
        # The state may hold references to the live weights: copy them out before the live
        # (non-EMA) weights are put back.
        return pipeline_from_state(pipe, state) if accelerator.is_main_process else None


@contextmanager
def ema_weights(ema, params):
    """The EMA's weights in ``params`` for the block, the live ones back after it (nothing
    changes when EMA is off): what the checkpoints hold and the validation videos show. The
    live weights wait on the CPU (as ``EMAModel.store`` keeps them), FSDP2's shards where they
    are (a DTensor moved to the CPU would leave its device mesh)."""
    if ema is None:
        yield
        return
    live = [p.detach().clone() if is_dtensor(p) else p.detach().cpu().clone() for p in params]
    ema.copy_to(params)
    try:
        yield
    finally:
        with torch.no_grad():
            for param, saved in zip(params, live, strict=True):
                param.copy_(saved)


def pipeline_from_state(pipe, state: dict) -> FactorPortraitPipeline:
    """Fresh copies of ``pipe``'s trained parts (transformer, expression encoder) holding
    ``state`` (keys prefixed by the part's name), LoRA fused; the VAE and scheduler shared."""
    parts = {}
    for name in ("transformer", "expression_encoder"):
        live = getattr(pipe, name)
        fresh = type(live).from_config(live.config)
        if getattr(live, "peft_config", None):
            fresh.add_adapter(live.peft_config["default"])
        prefix = name + "."
        fresh.load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )
        if getattr(fresh, "peft_config", None):
            fresh.fuse_lora()
            fresh.unload_lora()
        parts[name] = fresh
    return FactorPortraitPipeline(vae=pipe.vae, scheduler=pipe.scheduler, **parts)


def save_ema(ema, path: Path, *, write: bool = True) -> None:
    """The EMA's shadow weights as safetensors: nothing of ours in the state is pickled. Whole
    tensors, however the run was sharded (so any number of processes resumes it): under FSDP2
    every process calls this (gathering the shards is collective) and ``write`` only on one."""
    tensors = {
        f"shadow.{i:05d}": full_tensor(p.detach()).cpu().contiguous()
        for i, p in enumerate(ema.shadow_params)
    }
    if write:
        save_file(tensors, str(path))


def load_ema(ema, path: Path, optimization_steps: int) -> None:
    """Put ``save_ema``'s weights back into ``ema``, refusing those of other parameters; under
    FSDP2 each process keeps its shard of them (every process calls this)."""
    tensors = load_file(str(path))
    shadow = [tensors[f"shadow.{i:05d}"] for i in range(len(tensors))]
    if [p.shape for p in shadow] != [p.shape for p in ema.shadow_params]:
        raise InputError(f"{path}: the EMA weights do not match this run's trained parameters")
    shadow = [shard_like(s, like) for s, like in zip(shadow, ema.shadow_params, strict=True)]
    ema.load_state_dict({"shadow_params": shadow, "optimization_step": optimization_steps})


def replica_spread(accelerator, params) -> float:
    """How far the processes' copies of the trained weights are apart (0 when data parallel
    training keeps them in step, as it must): spread of a float64 checksum over processes."""
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum()
    gathered = accelerator.gather(checksum.reshape(1).to(accelerator.device))
    return float(gathered.max() - gathered.min())
