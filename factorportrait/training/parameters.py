"""What trains: the new layers only, LoRA on the attention, or the whole transformer; Wan's own
channels of the widened patch embedding held as Wan trained them (README: Training)."""

from __future__ import annotations

import torch

from ..errors import InputError
from ..models.transformer_factorportrait import LATENT_CHANNELS


def select_parameters(
    transformer, expression_encoder, trainable: str, lora_rank: int = 16
) -> list[torch.nn.Parameter]:
    """Mark what trains and return those parameters. ``new``: the new layers only: the patch
    embedding's weights on the new condition channels (reference, normals, rays; Wan's noise
    channels 0-15 and the bias stay frozen, see ``freeze_pretrained_channels``), the expression
    controller and the expression head; ``lora`` adds LoRA on the attention; ``full``: the
    whole transformer too, Wan's channels of the patch embedding included."""
    transformer.requires_grad_(trainable == "full")
    if trainable == "lora":
        try:
            from peft import LoraConfig
        except ImportError:  # an extra: the app and inference do not need it
            raise InputError(
                'LoRA training needs peft: pip install -e ".[train]" (README: Quick start)'
            ) from None

        transformer.add_adapter(
            LoraConfig(
                r=lora_rank,
                lora_alpha=lora_rank,
                init_lora_weights="gaussian",
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            )
        )
    for module in (
        transformer.patch_embedding,
        transformer.expression_controller,
        expression_encoder.head,
    ):
        module.requires_grad_(True)
    freeze_pretrained_channels(transformer.patch_embedding, frozen=trainable != "full")
    params = [p for p in transformer.parameters() if p.requires_grad]
    return params + list(expression_encoder.head.parameters())


def freeze_pretrained_channels(patch_embedding: torch.nn.Conv3d, *, frozen: bool = True) -> None:
    """Keep Wan's part of the widened patch embedding as Wan trained it: its bias is frozen and
    a gradient mask zeroes the gradient of the weights on the noise channels (0-15), so only
    the new condition channels learn. AdamW (without weight decay, as ``train`` uses it) and
    the EMA then leave those weights bit-identical. The mask is a hook on the parameter, which
    FSDP replaces (FSDP1 flattens it, FSDP2 swaps in a DTensor): under FSDP2 ``train`` zeroes
    the same channels with ``zero_pretrained_gradient`` after backward; under FSDP1 it refuses
    ``trainable`` other than full. ``frozen=False`` undoes it (``full`` trains all of it)."""
    previous = getattr(patch_embedding, "_pretrained_channels_mask", None)
    if previous is not None:
        previous.remove()
        patch_embedding._pretrained_channels_mask = None
    if patch_embedding.bias is not None:
        patch_embedding.bias.requires_grad_(not frozen)
    if not frozen:
        return

    def mask(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:, :LATENT_CHANNELS] = 0
        return grad

    patch_embedding._pretrained_channels_mask = patch_embedding.weight.register_hook(mask)


def frozen_in_trained(transformer, trainable: str) -> int:
    """How many elements of the parameters ``select_parameters`` returns do not learn (the
    masked pretrained channels of the patch embedding): subtract them when counting."""
    if trainable == "full":
        return 0
    return transformer.patch_embedding.weight[:, :LATENT_CHANNELS].numel()


def zero_pretrained_gradient(weight: torch.nn.Parameter) -> None:
    """What ``freeze_pretrained_channels``'s hook does, on a gradient already computed: zero the
    gradient of the patch embedding's weights on Wan's noise channels (0-15). For FSDP2's
    DTensor parameters, on this process's shard, which splits the output channels (dim 0) and
    so holds every input channel of its rows."""
    from torch.distributed.tensor import DTensor, Shard

    grad = weight.grad
    if grad is None:
        return
    if isinstance(grad, DTensor):
        if any(isinstance(p, Shard) and p.dim == 1 for p in grad.placements):
            raise RuntimeError("the patch embedding is sharded over its input channels")
        grad = grad.to_local()
    with torch.no_grad():
        grad[:, :LATENT_CHANNELS] = 0
