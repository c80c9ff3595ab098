"""Training settings: one validated JSON file (``--config``), every field optional."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InputError

# The largest range of one MediaPipe blendshape over a target that counts as "the expression
# changes" (the C1 filter). A still face jitters by up to ~0.2 under head and camera motion.
EXPRESSION_CHANGE = 0.3


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int = Field(1000, ge=1)
    learning_rate: float = Field(1e-4, gt=0, le=1)
    batch_size: int = Field(1, ge=1)
    seed: int = 0
    # Which parameters learn: the new layers (the patch embedding's weights on the new
    # condition channels, the expression controller, the expression head; Wan's noise channels
    # of the patch embedding and its bias stay frozen), plus LoRA on the attention ("lora"), or
    # the whole transformer, Wan's patch embedding included ("full").
    trainable: Literal["new", "lora", "full"] = "new"
    lora_rank: int = Field(16, ge=1)
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = True
    # Flow matching: x_t = (1 - s) x0 + s e, target e - x0; s = shift(sigmoid(N(mean, std))).
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = Field(3.0, gt=0)
    # Condition dropout, so classifier-free guidance has something to contrast with.
    drop_expression: float = Field(0.1, ge=0, le=1)
    drop_reference: float = Field(0.05, ge=0, le=1)
    drop_normals: float = Field(0.0, ge=0, le=1)
    # EMA of the trained weights (saved checkpoints hold it), diffusers' EMAModel: the first
    # update copies the weights, then update n + 1 (n >= 1) uses the decay
    # min(ema_decay, (1 + n) / (10 + n)): 2/11 at the second update, 0.5 at the ninth.
    ema_decay: float | None = Field(None, gt=0, lt=1)
    save_every: int = Field(500, ge=1)
    validate_every: int = Field(500, ge=1)
    validation_steps: int = Field(20, ge=1)
    log_every: int = Field(10, ge=1)
    # The paper's C1 ablation: leave out clips whose expression and camera both change.
    exclude_combined_changes: bool = False
    # What counts as an expression change for C1 (see EXPRESSION_CHANGE).
    expression_change_threshold: float = Field(EXPRESSION_CHANGE, gt=0, le=1)
    mark_trained: bool = False  # the final checkpoint says "trained" (else "in-training")

    @classmethod
    def load(cls, path: str | Path | None) -> TrainConfig:
        if path is None:
            return cls()
        try:
            return cls.model_validate_json(Path(path).read_bytes())
        except OSError as exc:
            raise InputError(f"--config {path}: {exc.strerror or exc}") from None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise InputError(f"--config {Path(path).name}: {where}: {first['msg']}") from None
