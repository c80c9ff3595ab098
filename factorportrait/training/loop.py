"""``train``: fine-tune a FactorPortrait pipeline on prepared samples with accelerate.

Flow matching as in DESIGN.md section 6: x_t = (1 - s) x0 + s e, target e - x0, s from a
logit-normal with Wan's shift; conditions dropped at random (the same zeros guidance uses);
gradient checkpointing; mixed precision; new layers only or the whole transformer; optional
EMA; resumable (accelerate's state + the step); checkpoints in the pipeline's own
from_pretrained format; validation videos; a JSON-lines log and, when tensorboard is installed,
tensorboard curves. Multi-GPU and FSDP come from accelerate's own launcher (``accelerate launch
-m factorportrait train ...``), nothing home-made.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputError
from ..models import aggregate_codes
from ..pipeline import FactorPortraitPipeline, drop_conditions
from .config import TrainConfig

CONDITION_DROPS = (
    ("expression", "drop_expression"),
    ("reference", "drop_reference"),
    ("normals", "drop_normals"),
)


class PreparedSamples(torch.utils.data.Dataset):
    """Samples written by ``prepare``, loaded lazily (one safetensors file each)."""

    def __init__(
        self,
        data: str | Path,
        split: str,
        *,
        exclude_combined: bool = False,
        expression_change_threshold: float = 0.3,
    ):
        data = Path(data)
        index = data / "index.jsonl"
        if not index.is_file():
            raise InputError(f"--data {data}: no index.jsonl (run prepare first)")
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["split"] == split]
        if exclude_combined:  # C1: no clip where expression and camera both change
            rows = [
                r
                for r in rows
                if not (
                    float(r["expression_change"]) > expression_change_threshold
                    and r["has_camera_change"] == "true"
                )
            ]
        self.files = [data / r["file"] for r in rows]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.files[index]))


def expression_features(batch: dict, code_type: str) -> torch.Tensor:
    if code_type == "image":
        return batch["crops"].permute(0, 1, 4, 2, 3).float() / 255.0
    if code_type == "blendshapes":
        return batch["blendshapes"]
    return batch["crop_landmarks"].flatten(2)


def flow_matching_sigmas(
    batch: int, config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """Logit-normal noise levels, shifted towards noise like Wan's sampler."""
    u = torch.randn(batch, generator=generator) * config.logit_std + config.logit_mean
    sigma = torch.sigmoid(u)
    return config.shift * sigma / (1 + (config.shift - 1) * sigma)


def training_loss(
    pipe: FactorPortraitPipeline,
    batch: dict,
    config: TrainConfig,
    generator: torch.Generator,
    *,
    drop: bool = True,
) -> torch.Tensor:
    transformer = pipe.transformer
    device, dtype = batch["target_latents"].device, transformer.dtype
    x0 = batch["target_latents"].float()
    noise = torch.randn(x0.shape, generator=generator).to(device)
    sigma = flow_matching_sigmas(len(x0), config, generator).to(device)
    s = sigma.view(-1, 1, 1, 1, 1)
    noisy = (1 - s) * x0 + s * noise
    codes = aggregate_codes(
        pipe.expression_encoder(
            expression_features(batch, pipe.expression_encoder.config.code_type)
        )
    )
    conditions = {
        "reference_latents": batch["reference_latents"],
        "ray_latents": batch["ray_latents"],
        "normal_latents": batch["normal_latents"] if transformer.config.use_normals else None,
        "expression_codes": codes,
    }
    if drop:  # per sample: the whole condition is zeroed, exactly as guidance does
        for name, field in CONDITION_DROPS:
            probability = getattr(config, field)
            if probability <= 0:
                continue
            keep = (torch.rand(len(x0), generator=generator) >= probability).to(device)
            dropped = drop_conditions(conditions, [name])
            for key, value in conditions.items():
                if value is not None and dropped[key] is not value:
                    shape = (-1,) + (1,) * (value.ndim - 1)
                    conditions[key] = torch.where(keep.view(shape), value, dropped[key])
    conditions = {k: None if v is None else v.to(dtype) for k, v in conditions.items()}
    prediction = transformer(noisy.to(dtype), sigma * 1000, **conditions).sample
    return torch.nn.functional.mse_loss(prediction.float(), (noise - x0).float())


def select_parameters(
    pipe: FactorPortraitPipeline, trainable: str, lora_rank: int = 16
) -> list[torch.nn.Parameter]:
    transformer = pipe.transformer
    transformer.requires_grad_(trainable == "full")
    if trainable == "lora":
        from peft import LoraConfig

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
        pipe.expression_encoder.head,
    ):
        module.requires_grad_(True)
    pipe.vae.requires_grad_(False)
    params = [p for p in transformer.parameters() if p.requires_grad]
    return params + list(pipe.expression_encoder.head.parameters())


def train(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    *,
    cpu: bool = False,
) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trackers = "tensorboard" if importlib.util.find_spec("tensorboard") else None
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=cpu, project_dir=str(out), log_with=trackers
    )
    set_seed(config.seed)
    try:
        pipe = FactorPortraitPipeline.from_pretrained(str(checkpoint), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--checkpoint {checkpoint}: cannot load it ({str(exc)[:160]})") from None
    train_set = PreparedSamples(
        data,
        "train",
        exclude_combined=config.exclude_combined_changes,
        expression_change_threshold=config.expression_change_threshold,
    )
    val_set = PreparedSamples(data, "val")
    if len(train_set) == 0:
        raise InputError(f"--data {data}: no training samples")
    params = select_parameters(pipe, config.trainable, config.lora_rank)
    if config.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    transformer, head, optimizer, loader = accelerator.prepare(
        pipe.transformer, pipe.expression_encoder.head, optimizer, loader
    )
    pipe.vae.to(accelerator.device)
    pipe.expression_encoder.to(accelerator.device)
    ema = None
    if config.ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=config.ema_decay)
    if trackers:
        accelerator.init_trackers("factorportrait", config=config.model_dump())

    state_dir, step_file = out / "state", out / "state" / "step.json"
    step = 0
    if step_file.is_file():  # resume where the last run saved
        accelerator.load_state(str(state_dir))
        step = json.loads(step_file.read_text())["step"]
    generator = torch.Generator().manual_seed(config.seed + step)
    log_path = out / "log.jsonl"
    pipe.transformer.train()
    pipe.expression_encoder.train()
    losses = []
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            with accelerator.accumulate(transformer):
                loss = training_loss(pipe, batch, config, generator)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if ema is not None:
                ema.step(params)
            step += 1
            losses.append(float(loss.detach()))
            if step % config.log_every == 0 or step == config.steps:
                record = {
                    "step": step,
                    "loss": sum(losses[-config.log_every :]) / len(losses[-config.log_every :]),
                }
                with open(log_path, "a") as log:
                    log.write(json.dumps(record) + "\n")
                accelerator.log({"loss": record["loss"]}, step=step)
            if step % config.save_every == 0 or step == config.steps:
                accelerator.save_state(str(state_dir))
                step_file.write_text(json.dumps({"step": step}))
                _save_pipeline(
                    pipe,
                    out / f"checkpoint-{step}",
                    ema,
                    params,
                    "trained" if config.mark_trained and step == config.steps else "in-training",
                )
            if len(val_set) and (step % config.validate_every == 0 or step == config.steps):
                _validate(
                    pipe,
                    val_set[0],
                    out / "validation" / f"step-{step:06d}.mp4",
                    config.validation_steps,
                    accelerator.device,
                )
    accelerator.end_training()
    final = out / f"checkpoint-{config.steps}"
    return {
        "steps": step,
        "final_checkpoint": str(final),
        "losses": losses,
        "mean_loss_last": sum(losses[-5:]) / max(1, len(losses[-5:])) if losses else math.nan,
    }


def _save_pipeline(pipe, path: Path, ema, params, status: str) -> None:
    """The pipeline as from_pretrained loads it; LoRA is merged into a copy of the weights."""
    import copy

    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    transformer = pipe.transformer
    if getattr(transformer, "peft_config", None):
        transformer = copy.deepcopy(transformer)
        transformer.fuse_lora()
        transformer.unload_lora()
    transformer.register_to_config(training_status=status)
    FactorPortraitPipeline(
        vae=pipe.vae,
        transformer=transformer,
        scheduler=pipe.scheduler,
        expression_encoder=pipe.expression_encoder,
    ).save_pretrained(str(path), safe_serialization=True)
    if ema is not None:
        ema.restore(params)


@torch.no_grad()
def _validate(pipe, sample: dict, path: Path, steps: int, device) -> None:
    from ..generation import label_untrained
    from ..io import write_video

    pipe.transformer.eval()
    features = expression_features(
        {k: v[None] for k, v in sample.items()}, pipe.expression_encoder.config.code_type
    ).to(device)
    latents = {
        "reference_latents": sample["reference_latents"][None],
        "ray_latents": sample["ray_latents"][None],
        "normal_latents": sample["normal_latents"][None],
        "expression_codes": aggregate_codes(pipe.expression_encoder(features)),
    }
    frames = pipe(
        condition_latents=latents,
        num_inference_steps=steps,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(0),
    ).frames[0]
    frames = (frames.clip(0, 1) * 255 + 0.5).astype("uint8")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, label_untrained(frames) if pipe.untrained else frames, 8)
    pipe.transformer.train()
