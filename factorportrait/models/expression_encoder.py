"""Expression codes per frame.

The paper's code: a frozen, pretrained image encoder from transformers (DINOv2-class, chosen by
config) on aligned face crops, then a small trainable head. Two alternatives share the head and
the output size, selectable by ``code_type``: MediaPipe's 52 blendshapes (CPU-cheap) and 2-D
landmarks in the aligned crop (the paper's C3 ablation).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

CodeType = Literal["image", "blendshapes", "landmarks"]
FEATURE_SIZES = {"blendshapes": 52, "landmarks": 478 * 2}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def expression_input(code_type: CodeType, fields) -> torch.Tensor:
    """What the encoder reads, from a batch of conditioning fields (B, F, ...) by name: the
    aligned face crops (uint8, channels last) as floats in [0, 1] channels first, the
    blendshapes, or the crop landmarks flattened (C3). The one place that maps a code type
    to its input: the pipeline and training both call it."""
    if code_type == "image":
        return fields["crops"].permute(0, 1, 4, 2, 3).float() / 255.0
    if code_type == "blendshapes":
        return fields["blendshapes"].float()
    return fields["crop_landmarks"].float().flatten(2)


class FactorPortraitExpressionEncoder(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        code_type: CodeType = "image",
        backbone_config: dict | None = None,  # a transformers config dict (model_type=dinov2...)
        code_dim: int = 256,
        image_size: int = 224,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        frames_per_batch: int = 32,
    ):
        super().__init__()
        if code_type == "image":
            from transformers import AutoConfig, AutoModel

            config = dict(backbone_config or {"model_type": "dinov2"})
            model_type = config.pop("model_type")
            self.backbone = AutoModel.from_config(AutoConfig.for_model(model_type, **config))
            self.backbone.requires_grad_(False)  # frozen: only the head trains
            in_features = 2 * self.backbone.config.hidden_size  # CLS token + mean patch token
        elif code_type in FEATURE_SIZES:
            self.backbone = None
            in_features = FEATURE_SIZES[code_type]
        else:
            raise ValueError(
                f"code_type must be image, blendshapes or landmarks, got {code_type!r}"
            )
        self.head = nn.Sequential(
            nn.LayerNorm(in_features),
            nn.Linear(in_features, code_dim),
            nn.SiLU(),
            nn.Linear(code_dim, code_dim),
        )
        self.register_buffer("mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone is not None:
            self.backbone.eval()  # frozen means no dropout / stat updates either
        return self

    def forward(self, features: torch.Tensor, *, pooled: bool = False) -> torch.Tensor:
        """image: crops (B, F, 3, h, w) in [0, 1], or with pooled=True the backbone's pooled
        features (B, F, 2 x hidden) from ``pooled_features`` (cached by prepare);
        blendshapes: (B, F, 52); landmarks: (B, F, 956). Returns per-frame codes
        (B, F, code_dim)."""
        if self.backbone is not None and not pooled:
            features = self.pooled_features(features)
        return self.head(features.to(self.head[1].weight.dtype))

    @torch.no_grad()
    def pooled_features(self, crops: torch.Tensor) -> torch.Tensor:
        """The frozen backbone's CLS token and mean patch token per crop: (B, F, 2 x hidden).
        Nothing here trains, so training data can cache it."""
        batch, frames = crops.shape[:2]
        size = self.config.image_size
        outputs = []
        for chunk in crops.flatten(0, 1).split(self.config.frames_per_batch):
            pixels = F.interpolate(
                chunk.float(),
                size=(size, size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
            pixels = ((pixels - self.mean) / self.std).to(self.backbone.dtype)
            hidden = self.backbone(pixel_values=pixels).last_hidden_state
            outputs.append(torch.cat([hidden[:, 0], hidden[:, 1:].mean(1)], dim=-1))
        return torch.cat(outputs).view(batch, frames, -1)
