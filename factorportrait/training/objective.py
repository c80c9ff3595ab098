"""The flow-matching objective ``train`` minimises (README: Training): x_t = (1 - s) x0 + s e,
target e - x0, s from a logit-normal with Wan's shift; conditions dropped at random per sample
(the same zeros guidance uses). The randomness is drawn apart from the loss, on a CPU generator,
so a seed gives the same draw on any device."""

from __future__ import annotations

import torch

from ..models import aggregate_codes
from ..pipelines.pipeline_factorportrait import drop_conditions
from .config import TrainConfig
from .expression_stats import encoder_features

CONDITION_DROPS = (
    ("expression", "drop_expression"),
    ("reference", "drop_reference"),
    ("normals", "drop_normals"),
)


def expression_codes(encoder, batch: dict) -> torch.Tensor:
    """Per-latent-frame expression codes of a batch of prepared samples, from what the encoder
    reads (``expression_stats.encoder_features``): the cached backbone features (or the crops,
    when prepare kept them instead), the blendshapes, or the crop landmarks (C3). The encoder's
    forward normalises them by its fixed statistics, as in inference."""
    features, pooled = encoder_features(encoder, batch)
    return aggregate_codes(encoder(features, pooled=pooled))


def flow_matching_sigmas(
    batch: int, config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """Logit-normal noise levels, shifted towards noise like Wan's sampler."""
    u = torch.randn(batch, generator=generator) * config.logit_std + config.logit_mean
    sigma = torch.sigmoid(u)
    return config.shift * sigma / (1 + (config.shift - 1) * sigma)


class FlowMatchingObjective(torch.nn.Module):
    """The trained parts (transformer + expression encoder) and the loss as ONE module.

    accelerate wraps this for DDP/FSDP: every trained parameter is used inside its forward, so
    the wrapper synchronises all of their gradients (calling the transformer or the encoder
    outside the wrapped module would silently train each process's replica apart).
    The randomness (noise, levels, dropout) is drawn outside, so it is reproducible.
    """

    def __init__(self, transformer, expression_encoder):
        super().__init__()
        self.transformer = transformer
        self.expression_encoder = expression_encoder
        self.use_normals = bool(transformer.config.use_normals)
        # FSDP's TRANSFORMER_BASED_WRAP shards the blocks the transformer names (those present).
        self._no_split_modules = list(getattr(transformer, "_no_split_modules", None) or [])

    def forward(
        self,
        batch: dict,
        noise: torch.Tensor,
        sigma: torch.Tensor,
        keep: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        x0 = batch["target_latents"].float()
        dtype = self.transformer.patch_embedding.weight.dtype
        s = sigma.view(-1, 1, 1, 1, 1)
        noisy = (1 - s) * x0 + s * noise
        codes = expression_codes(self.expression_encoder, batch)
        conditions = {
            "reference_latents": batch["reference_latents"],
            "ray_latents": batch["ray_latents"],
            "normal_latents": batch["normal_latents"] if self.use_normals else None,
            "expression_codes": codes,
        }
        # Per sample, a dropped condition is zeroed exactly as guidance does.
        for name, kept in keep.items():
            dropped = drop_conditions(conditions, [name])
            for key, value in conditions.items():
                if value is not None and dropped[key] is not value:
                    shape = (-1,) + (1,) * (value.ndim - 1)
                    conditions[key] = torch.where(kept.view(shape), value, dropped[key])
        conditions = {k: None if v is None else v.to(dtype) for k, v in conditions.items()}
        prediction = self.transformer(noisy.to(dtype), sigma * 1000, **conditions).sample
        return torch.nn.functional.mse_loss(prediction.float(), (noise - x0).float())


def draw_randomness(
    batch: dict, config: TrainConfig, generator: torch.Generator, *, drop: bool = True
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Noise, noise levels and per-condition keep masks for one batch (CPU generator, so a
    seed gives the same draw on any device)."""
    x0 = batch["target_latents"]
    device = x0.device
    noise = torch.randn(x0.shape, generator=generator).to(device)
    sigma = flow_matching_sigmas(len(x0), config, generator).to(device)
    keep = {}
    if drop:
        for name, field in CONDITION_DROPS:
            probability = getattr(config, field)
            if probability > 0:
                keep[name] = (torch.rand(len(x0), generator=generator) >= probability).to(device)
    return noise, sigma, keep


def training_loss(
    objective: FlowMatchingObjective,
    batch: dict,
    config: TrainConfig,
    generator: torch.Generator,
    *,
    drop: bool = True,
) -> torch.Tensor:
    """One flow-matching loss; ``objective`` may be wrapped by accelerate."""
    return objective(batch, *draw_randomness(batch, config, generator, drop=drop))
