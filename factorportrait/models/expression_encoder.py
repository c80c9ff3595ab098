"""Expression codes per frame.

The paper's code: a frozen, pretrained image encoder from transformers (DINOv2-class, chosen by
config) on aligned face crops, then a small trainable head. Two alternatives share the head and
the output size, selectable by ``code_type``: MediaPipe's 52 blendshapes (CPU-cheap) and 2-D
landmarks in the aligned crop (the paper's C3 ablation).

The head reads its features normalised by FIXED per-feature statistics (``feature_mean``,
``feature_std`` in the config; identity for a fresh encoder): ``train`` sets them from what
``prepare`` measured over the training data (``set_feature_statistics``), a saved checkpoint
carries them, and the one forward applies them in training and inference alike. Not a
per-sample LayerNorm, which is blind to scale: it gave an expression and the same expression
three times as strong one code (issue 27). Checkpoints saved before (no ``input_norm`` in their
config) keep their LayerNorm: ``input_norm="layernorm"``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

CodeType = Literal["image", "blendshapes", "landmarks"]
# "fixed": (x - feature_mean) / feature_std with the config's statistics; "layernorm": the
# per-sample LayerNorm (with weights) that encoders saved before the statistics began with.
InputNorm = Literal["fixed", "layernorm"]
# The std floor: a feature whose spread over the training data is below this fraction of the
# features' typical spread (the root mean square of the per-feature stds) is divided by that
# fraction instead, so a feature that (nearly) never moved there is not blown up from its
# noise; never below STD_FLOOR_MIN (all features constant).
STD_FLOOR_FRACTION = 0.1
STD_FLOOR_MIN = 1e-6
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


def floored_std(std) -> list[float]:
    """Per-feature stds with the floor applied (see STD_FLOOR_FRACTION)."""
    std = torch.as_tensor(std, dtype=torch.float64)
    floor = max(STD_FLOOR_MIN, STD_FLOOR_FRACTION * float(std.square().mean().sqrt()))
    return std.clamp_min(floor).tolist()


class FixedFeatureNorm(nn.Module):
    """(x - mean) / std per feature, with statistics fixed ahead (nothing here trains, nothing
    is saved in the state dict: the encoder's config holds them). Computed in float32 whatever
    the module's dtype, so the statistics are never rounded to bfloat16."""

    def __init__(self, features: int, mean=None, std=None):
        super().__init__()
        self.normalized_shape = (features,)  # as LayerNorm names the size of what it reads
        mean = [0.0] * features if mean is None else [float(m) for m in mean]
        std = [1.0] * features if std is None else [float(s) for s in std]
        if len(mean) != features or len(std) != features:
            raise ValueError(
                f"feature statistics: expected {features} means and stds, "
                f"got {len(mean)} and {len(std)}"
            )
        # Checked as numbers, not tensors: the module may be built on the meta device.
        if not all(math.isfinite(m) for m in mean) or not all(0 < s < math.inf for s in std):
            raise ValueError("feature statistics: means must be finite and stds positive")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.mean, self.std = self.mean.float(), self.std.float()  # moved, never cast
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Float32 out, whatever comes in."""
        return (features.float() - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}"


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
        input_norm: InputNorm = "fixed",
        feature_mean: list[float] | None = None,  # per input feature; None: 0 (identity)
        feature_std: list[float] | None = None,  # per input feature, floored; None: 1
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
        if (feature_mean is None) != (feature_std is None):
            raise ValueError("feature_mean and feature_std are given together or not at all")
        if input_norm == "fixed":
            norm = FixedFeatureNorm(in_features, feature_mean, feature_std)
        elif input_norm == "layernorm":  # checkpoints saved before the fixed statistics
            if feature_mean is not None or feature_std is not None:
                raise ValueError("feature statistics need input_norm='fixed'")
            norm = nn.LayerNorm(in_features)
        else:
            raise ValueError(f"input_norm must be fixed or layernorm, got {input_norm!r}")
        # head[0] normalises the input; head[1:] is the trained MLP (its state-dict keys are
        # those of every checkpoint so far).
        self.head = nn.Sequential(
            norm,
            nn.Linear(in_features, code_dim),
            nn.SiLU(),
            nn.Linear(code_dim, code_dim),
        )
        self.register_buffer("mean", torch.tensor(image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """As diffusers' (from_pretrained builds through it), except that a config saved before
        ``input_norm`` existed means the LayerNorm head its weights were trained with."""
        if isinstance(config, dict) and "input_norm" not in config and "input_norm" not in kwargs:
            config = {**config, "input_norm": "layernorm"}
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @property
    def in_features(self) -> int:
        """The size of the head's input: what ``feature_mean`` / ``feature_std`` describe."""
        return self.head[1].in_features

    @property
    def has_feature_statistics(self) -> bool:
        return self.config.feature_mean is not None

    def set_feature_statistics(self, mean, std) -> None:
        """Normalise the input by these per-feature statistics from now on (the std floored,
        see STD_FLOOR_FRACTION), and record them in the config, so a saved checkpoint carries
        them. ``train`` calls it with what ``prepare`` measured."""
        if self.config.input_norm != "fixed":
            raise ValueError(
                "this encoder normalises by a LayerNorm (saved before the fixed statistics)"
            )
        mean = [float(m) for m in torch.as_tensor(mean, dtype=torch.float64).flatten()]
        std = floored_std(torch.as_tensor(std, dtype=torch.float64).flatten())
        norm = FixedFeatureNorm(self.in_features, mean, std).to(self.head[1].weight.device)
        self.head[0] = norm
        self.register_to_config(feature_mean=mean, feature_std=std)

    def normalised_features(self, features: torch.Tensor, *, pooled: bool = False):
        """What the head's MLP reads: the input's features normalised (see ``forward``)."""
        if self.backbone is not None and not pooled:
            features = self.pooled_features(features)
        dtype = self.head[1].weight.dtype
        if isinstance(self.head[0], FixedFeatureNorm):  # in float32, then the head's dtype
            return self.head[0](features).to(dtype)
        return self.head[0](features.to(dtype))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone is not None:
            self.backbone.eval()  # frozen means no dropout / stat updates either
        return self

    def forward(self, features: torch.Tensor, *, pooled: bool = False) -> torch.Tensor:
        """image: crops (B, F, 3, h, w) in [0, 1], or with pooled=True the backbone's pooled
        features (B, F, 2 x hidden) from ``pooled_features`` (cached by prepare);
        blendshapes: (B, F, 52); landmarks: (B, F, 956). Returns per-frame codes
        (B, F, code_dim). The one path of training and inference: the features are normalised
        here (by the config's fixed statistics, or an old checkpoint's LayerNorm)."""
        return self.head[1:](self.normalised_features(features, pooled=pooled))

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
