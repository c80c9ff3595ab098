"""Generation split over processes with diffusers' own context parallelism (README: Several
GPUs, generation): each process holds the whole transformer and a 1/N slice of the video's
tokens; attention exchanges them (Ulysses: an all-to-all over the heads; ring: key/value
blocks passed round). Started by ``torchrun`` / ``accelerate launch``, one process per GPU;
every process runs the same sampler on the same inputs and seed, so every process ends with
the same frames (the first writes them).

diffusers supplies the machinery (``ModelMixin.enable_parallelism`` with a
``ContextParallelConfig``, its split / gather hooks, the Ulysses and ring attention); a
transformer declares where its sequence is split and gathered in a ``_cp_plan``. Wan's own
plan does not fit either transformer here, so this module supplies theirs:

* FactorPortrait (``factorportrait_cp_plan``): the tokens split after the patch embedding
  (the input of the first block), the rotary tables split with them, the per-token (or per
  latent frame) modulation split at the output of ``condition_embedder.time_proj``, which is
  still one row per latent slot there, and everything gathered at the output of the LAST
  block, because the reference slot's tokens are dropped right after the blocks. The slots
  (the reference + the T latent frames) must split evenly: (1 + T) % N == 0 (e.g. 57 frames:
  1 + 15 = 16 slots, for 2, 4 or 8 processes).
* Wan2.2-Animate (``wan_animate_cp_plan``, diffusers' ``WanAnimateTransformer3DModel``, which
  declares no plan): Wan's (tokens split at the first block, rotary tables split, gathered at
  ``proj_out``) plus the face adapters' motion vectors split per latent frame like the tokens
  (each frame's tokens attend to that frame's motion vector), and the face adapters'
  attention kept local (it is per frame: nothing to exchange). (T + 1) % N == 0 likewise.

On the CPU (gloo), diffusers 0.42.1 refuses before any of this: ``_resolve_parallel_config``
takes ``rank % torch.accelerator.device_count()``, a ZeroDivisionError without an
accelerator. ``enable_context_parallel`` counts the CPU as one device for that call (only
where no accelerator exists), which is how the tests run Ulysses on two CPU processes. Ring
attention needs an attention backend that returns the log-sum-exp (flash, cuDNN: GPUs);
diffusers' native one refuses (``ValueError: Native attention does not support
return_lse=True``), so on the CPU only Ulysses runs.
"""

from __future__ import annotations

import contextlib
import os
from unittest import mock

import torch

from ..errors import InputError

SPLITS = ("ulysses", "ring")


def factorportrait_cp_plan(transformer) -> dict:
    """The context-parallel plan of ``FactorPortraitTransformer3DModel`` (module docstring)."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    last = len(transformer.blocks) - 1
    return {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        # (B, 1+T, 6D) with expression codes: one row per slot, before it is repeated over
        # each slot's tokens. Without codes it is (B, 6D), the same for every token: left whole.
        "condition_embedder.time_proj": {
            0: ContextParallelInput(split_dim=1, expected_dims=3, split_output=True)
        },
        "blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
        },
        f"blocks.{last}": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def wan_animate_cp_plan(transformer) -> dict:
    """The context-parallel plan of diffusers' ``WanAnimateTransformer3DModel`` (module
    docstring); ``enable_context_parallel`` also keeps its face attention local."""
    from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

    return {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "blocks.0": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
        },
        # The motion vectors, (B, T+1, heads+1, C): each face adapter gets its frames' share.
        "face_adapter.*": {
            "encoder_hidden_states": ContextParallelInput(
                split_dim=1, expected_dims=4, split_output=False
            )
        },
        "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def cp_plan(transformer) -> dict:
    """The plan for either transformer here, told apart by what they hold."""
    if hasattr(transformer, "face_adapter"):
        return wan_animate_cp_plan(transformer)
    if hasattr(transformer, "expression_controller"):
        return factorportrait_cp_plan(transformer)
    plan = getattr(transformer, "_cp_plan", None)
    if plan is None:
        raise InputError(f"{type(transformer).__name__}: no context-parallel plan")
    return plan


def init_distributed() -> tuple[int, int]:
    """The process group torchrun / accelerate launch describe in the environment (NCCL on
    GPUs, gloo on the CPU), each process on its own GPU; (rank, world size)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        if "RANK" not in os.environ:
            raise InputError("context parallelism: start this with torchrun or accelerate launch")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def check_slots(slots: int, world: int) -> None:
    """diffusers splits evenly: the latent slots (tokens come per slot) must divide."""
    if slots % world:
        raise InputError(
            f"context parallelism over {world} processes: the {slots} latent slots (the "
            f"reference + the latent frames) do not split evenly (FactorPortrait: choose F "
            f"frames with (F - 1) / 4 + 2 a multiple of {world}, e.g. 57 frames: 16 slots; "
            "README: Generation on several GPUs)"
        )


def enable_context_parallel(transformer, split: str = "ulysses", degree: int | None = None):
    """diffusers' context parallelism on ``transformer`` over ``degree`` processes (all of
    them by default): ``split`` ``ulysses`` or ``ring``. Returns the transformer."""
    import torch.distributed as dist
    from diffusers import ContextParallelConfig

    if split not in SPLITS:
        raise InputError(f"--split: {split!r} is not one of {', '.join(SPLITS)}")
    if not dist.is_initialized():
        raise InputError("context parallelism: torch.distributed is not initialised")
    degree = degree or dist.get_world_size()
    on_cpu = torch._C._get_accelerator().type == "cpu"
    if split == "ring" and on_cpu:
        raise InputError(
            "ring attention needs an attention backend that returns the log-sum-exp (flash, "
            "cuDNN: GPUs); on the CPU diffusers' native attention refuses it: use ulysses"
        )
    config = (
        ContextParallelConfig(ulysses_degree=degree)
        if split == "ulysses"
        else ContextParallelConfig(ring_degree=degree)
    )
    heads = transformer.config.num_attention_heads
    if split == "ulysses" and heads % degree:
        raise InputError(f"ulysses over {degree} processes: {heads} attention heads do not split")
    with _cpu_counts_as_one_device(on_cpu):
        transformer.enable_parallelism(config=config, cp_plan=cp_plan(transformer))
    _keep_face_attention_local(transformer)
    transformer.register_forward_pre_hook(_slots_checker(transformer, degree), with_kwargs=True)
    return transformer


def _slots_checker(transformer, degree: int):
    """A pre-hook refusing, in words, a video whose latent slots do not split (diffusers
    would stop at an assertion inside the first block)."""
    # FactorPortrait's input lacks the reference slot it adds; Wan-Animate's holds it.
    extra = 0 if hasattr(transformer, "face_adapter") else 1

    def check(_module, args, kwargs):
        latents = args[0] if args else kwargs["hidden_states"]
        check_slots(latents.shape[2] + extra, degree)

    return check


@contextlib.contextmanager
def _cpu_counts_as_one_device(on_cpu: bool):
    """diffusers 0.42.1 places each rank on ``rank % torch.accelerator.device_count()``: zero
    devices without an accelerator (a ZeroDivisionError). On the CPU, count it as one."""
    if not on_cpu:
        yield
        return
    with mock.patch.object(torch.accelerator, "device_count", return_value=1):
        yield


def _keep_face_attention_local(transformer) -> None:
    """Wan-Animate's face adapters attend per frame (each frame's tokens to its own motion
    vector): with the frames split like the tokens there is nothing to exchange, but
    ``enable_parallelism`` handed their processors the parallel config too."""
    for adapter in getattr(transformer, "face_adapter", []):
        for module in adapter.modules():
            processor = getattr(module, "processor", None)
            if processor is not None and hasattr(processor, "_parallel_config"):
                processor._parallel_config = None


def is_writer() -> bool:
    """The process that writes outputs (the first; every process when not distributed)."""
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0
