"""Sharded training (accelerate's FSDP, version 2) as ``train`` uses it (README: Training,
"Several GPUs").

Under FSDP2 the trained parameters are DTensors, each process holding a shard. What the loop
needs for that, and nothing home-made beyond it:

* the parameters after ``accelerator.prepare`` (FSDP2 swaps the module's parameters for new
  DTensor ones and accelerate re-points the optimiser at them): ``prepared_parameters``;
* EMA over the shards: diffusers' ``EMAModel`` works on DTensors as they are (each process
  averages its own shard, 1/N of the copy); only saving and loading it need the whole tensors
  (``full_tensor`` / ``shard_like``, both collective);
* Wan's channels of the patch embedding kept frozen: the gradient hook of
  ``parameters.freeze_pretrained_channels`` sits on the parameter FSDP replaces, so the loop
  zeroes those channels of the (sharded) gradient after backward instead
  (``parameters.zero_pretrained_gradient``).

accelerate 1.16 turns FSDP on only on accelerators: on the CPU it silently trains data
parallel instead (``AcceleratorState`` sets ``DistributedType.FSDP`` only in its multi-GPU
branch). ``FACTORPORTRAIT_FSDP_ON_CPU=1`` (with ``ACCELERATE_USE_FSDP=true``) marks the state
FSDP anyway, so accelerate's own FSDP2 path (``fully_shard`` over gloo) runs on CPU processes:
how the sharded loop is tested without GPUs. Without it, asking for FSDP on the CPU prints
that accelerate fell back to data parallel.
"""

from __future__ import annotations

import os

import torch

from ..errors import InputError

CPU_SWITCH = "FACTORPORTRAIT_FSDP_ON_CPU"


def sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def fsdp_version(accelerator) -> int | None:
    """1 or 2 under FSDP, None otherwise (DeepSpeed included)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.FSDP:
        return None
    return int(accelerator.state.fsdp_plugin.fsdp_version)


def fsdp_requested() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fsdp_on_cpu(accelerator, mixed_precision: str) -> str | None:
    """On CPU processes asked for FSDP: accelerate's FSDP state with the switch, else a note
    that accelerate trains data parallel instead (None when nothing applies)."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return None
    if os.environ.get(CPU_SWITCH) != "1":
        return (
            "note: FSDP was asked for, but accelerate does not shard on the CPU: this run is "
            f"data parallel (set {CPU_SWITCH}=1 to run accelerate's FSDP2 over gloo)"
        )
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* variables, as accelerate reads
    if mixed_precision != "no":
        plugin.set_mixed_precision(mixed_precision)
    # Both states: accelerate reads the type from each of them.
    accelerator.state.fsdp_plugin = plugin
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    return f"FSDP{plugin.fsdp_version} on {accelerator.num_processes} CPU processes ({CPU_SWITCH})"


def refuse_under_sharding(accelerator, config) -> None:
    """What FSDP1 and DeepSpeed cannot do here (FSDP2 does all of it): the EMA and the frozen
    Wan channels (``trainable`` new or lora) need the original parameters, which their
    flattened ones are not."""
    if not sharded(accelerator) or fsdp_version(accelerator) == 2:
        return
    which = "FSDP1" if fsdp_version(accelerator) == 1 else "DeepSpeed"
    if config.ema_decay is not None:
        raise InputError(
            f"ema_decay: the EMA of {which}'s flattened parameters is not supported; use FSDP2 "
            "(accelerate launch --use_fsdp --fsdp_version 2) or data parallel"
        )
    if config.trainable != "full":
        raise InputError(
            f"trainable {config.trainable!r}: Wan's channels of the patch embedding are frozen "
            f"by a gradient mask, which {which}'s flattened parameters bypass; use FSDP2 "
            "(accelerate launch --use_fsdp --fsdp_version 2), data parallel or trainable 'full'"
        )


def prepared_parameters(optimizer) -> list[torch.nn.Parameter]:
    """The parameters the (prepared) optimiser steps, in its order: under FSDP2 these are
    the DTensor parameters that replaced the ones selected before ``prepare``."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def is_dtensor(tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a shard (collective: every process must call it), or the tensor."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` split as ``like`` is (every process must call it), or ``full`` as it is."""
    if not is_dtensor(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(
        full.to(like.device_mesh.device_type, like.dtype), like.device_mesh, like.placements
    )
