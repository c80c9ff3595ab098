"""``train``: fine-tune a FactorPortrait pipeline on prepared samples with accelerate.

Flow matching as in the README (Training): x_t = (1 - s) x0 + s e, target e - x0, s from a
logit-normal with Wan's shift; conditions dropped at random (the same zeros guidance uses);
gradient checkpointing; mixed precision; new layers only or the whole transformer; optional
EMA; resumable (accelerate's state + the step); checkpoints in the pipeline's own
from_pretrained format; validation videos; a JSON-lines log and, when tensorboard is installed,
tensorboard curves. Multi-GPU and FSDP come from accelerate's own launcher (``accelerate launch
-m factorportrait train ...``), nothing home-made: the trained parts and the loss are one module
(``FlowMatchingObjective``) so the wrapper sees every trained parameter, checkpoints come from
accelerate's full state dict, and only the main process writes files.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..checkpoints import component_digests
from ..errors import InputError
from ..models import aggregate_codes
from ..models.transformer_factorportrait import LATENT_CHANNELS
from ..pipeline import FactorPortraitPipeline, drop_conditions
from .config import EXPRESSION_CHANGE, TrainConfig

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
        expression_change_threshold: float = EXPRESSION_CHANGE,
        use_crops: bool = False,
    ):
        data = Path(data)
        index = data / "index.jsonl"
        if not index.is_file():
            raise InputError(f"--data {data}: no index.jsonl (run prepare first)")
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["split"] == split]
        before = len(rows)
        if exclude_combined:  # C1: no clip where expression and camera both change
            rows = [
                r
                for r in rows
                if not (
                    float(r["expression_change"]) > expression_change_threshold
                    and r["has_camera_change"] == "true"
                )
            ]
        self.rows = rows
        self.excluded = before - len(rows)
        self.files = [data / r["file"] for r in rows]
        self.use_crops = use_crops  # ignore cached backbone features (another backbone's)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = load_file(str(self.files[index]))
        if self.use_crops:
            sample.pop("expression_features", None)
        return sample

    def check_made_by(self, digests: dict[str, str], data: Path) -> None:
        """Refuse samples whose latents another VAE made; for an image expression encoder,
        fall back to the crops when another backbone made the cached features, or refuse.
        ``digests``: the checkpoint's ``component_digests``."""
        vae = digests["vae_digest"]
        if any(row.get("vae_digest", vae) != vae for row in self.rows):
            raise InputError(
                f"--data {data}: its latents were made by another VAE than the checkpoint's "
                "(run prepare with this checkpoint)"
            )
        if "backbone_digest" not in digests:  # blendshapes or landmarks: no features used
            return
        backbone = digests["backbone_digest"]
        foreign = [row for row in self.rows if row.get("backbone_digest") != backbone]
        if any(row.get("has_crops") != "true" for row in foreign):
            raise InputError(
                f"--data {data}: its expression features were made by another expression "
                "backbone and it kept no crops (run prepare with this checkpoint, or with "
                "--keep-crops)"
            )
        self.use_crops = bool(foreign)


def expression_codes(encoder, batch: dict) -> torch.Tensor:
    """Per-latent-frame expression codes of a batch of prepared samples, from what the encoder
    reads: the cached backbone features (or the crops, when prepare kept them instead),
    the blendshapes, or the crop landmarks (C3)."""
    code_type = encoder.config.code_type
    if code_type == "image":
        if "expression_features" in batch:
            codes = encoder(batch["expression_features"], pooled=True)
        else:
            codes = encoder(batch["crops"].permute(0, 1, 4, 2, 3).float() / 255.0)
    elif code_type == "blendshapes":
        codes = encoder(batch["blendshapes"])
    else:
        codes = encoder(batch["crop_landmarks"].flatten(2))
    return aggregate_codes(codes)


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
    FSDP's flattened parameters bypass: ``train`` refuses FSDP unless ``trainable`` is full.
    ``frozen=False`` undoes it (``full`` trains all of it)."""
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


def train(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    *,
    cpu: bool = False,
) -> dict:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    trackers = "tensorboard" if importlib.util.find_spec("tensorboard") else None
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, cpu=cpu, project_dir=str(out), log_with=trackers
    )
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if sharded and config.ema_decay is not None:
        raise InputError("ema_decay: EMA keeps whole copies of the weights; not with FSDP")
    if sharded and config.trainable != "full":
        raise InputError(
            f"trainable {config.trainable!r}: Wan's channels of the patch embedding are frozen "
            "by a gradient mask, which FSDP bypasses; use data parallel or trainable 'full'"
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
    digests = component_digests(pipe)  # hashed once: the 1.3B VAE is half a gigabyte
    for samples in (train_set, val_set):
        samples.check_made_by(digests, Path(data))
    if (train_set.use_crops or val_set.use_crops) and accelerator.is_main_process:
        print(  # much slower than cached features: never silently
            f"note: --data {data}: expression features from another expression backbone; "
            "encoding the kept crops at every step instead"
        )
    if accelerator.is_main_process:
        left_out = f", {train_set.excluded} left out by the C1 filter" if train_set.excluded else ""
        print(
            f"{len(train_set)} training samples{left_out}, {len(val_set)} validation; "
            f"{accelerator.num_processes} process(es) on {accelerator.device}"
        )
    params = select_parameters(
        pipe.transformer, pipe.expression_encoder, config.trainable, config.lora_rank
    )
    pipe.vae.requires_grad_(False)
    if config.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    # No weight decay: it would move the masked (frozen) Wan channels of the patch embedding.
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(config.seed),
    )
    objective = FlowMatchingObjective(pipe.transformer, pipe.expression_encoder)
    objective, optimizer, loader = accelerator.prepare(objective, optimizer, loader)
    pipe.vae.to(accelerator.device)  # validation videos only (training uses cached latents)
    if trackers:
        accelerator.init_trackers("factorportrait", config=config.model_dump())

    state_dir, step_file = out / "state", out / "state" / "step.json"
    step, saved_state = 0, {}
    if step_file.is_file():  # resume where the last run saved
        accelerator.load_state(str(state_dir))
        saved_state = json.loads(step_file.read_text())
        step = saved_state["step"]
    ema = None
    if config.ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=config.ema_decay)
        if "ema_steps" in saved_state and (state_dir / "ema.safetensors").is_file():
            _load_ema(ema, state_dir / "ema.safetensors", saved_state["ema_steps"])
            ema.to(accelerator.device)
    # Each process draws its own noise; reseeded from the step so a resumed run goes on alike.
    generator = torch.Generator().manual_seed(
        config.seed + step + 1_000_003 * accelerator.process_index
    )
    log_path = out / "log.jsonl"
    objective.train()
    losses = []
    progress = tqdm(
        total=config.steps,
        initial=step,
        desc="training",
        unit="step",
        disable=not accelerator.is_local_main_process,
    )
    while step < config.steps:
        for batch in loader:
            if step >= config.steps:
                break
            with accelerator.accumulate(objective):
                loss = training_loss(objective, batch, config, generator)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            if ema is not None:
                ema.step(params)
            step += 1
            losses.append(float(accelerator.reduce(loss.detach(), "mean")))  # over processes
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.4f}")
            record = None
            if step % config.log_every == 0 or step == config.steps:
                recent = losses[-config.log_every :]
                record = {"step": step, "loss": sum(recent) / len(recent)}
                accelerator.log({"loss": record["loss"]}, step=step)
            if step % config.save_every == 0 or step == config.steps:
                accelerator.save_state(str(state_dir))  # every process: accelerate coordinates
                if accelerator.num_processes > 1 and not sharded:
                    record = record or {"step": step}
                    record["replica_spread"] = _replica_spread(accelerator, params)
                saved = _trained_pipeline(accelerator, objective, pipe, ema, params)
                if accelerator.is_main_process:
                    status = "in-training"
                    if config.mark_trained and step == config.steps:
                        status = "trained"
                    saved.transformer.register_to_config(training_status=status)
                    saved.save_pretrained(str(out / f"checkpoint-{step}"), safe_serialization=True)
                    saved_state = {"step": step}
                    if ema is not None:  # as safetensors: nothing in state/ of ours is pickled
                        _save_ema(ema, state_dir / "ema.safetensors")
                        saved_state["ema_steps"] = ema.optimization_step
                    step_file.write_text(json.dumps(saved_state))
                accelerator.wait_for_everyone()
            if record is not None and accelerator.is_main_process:
                with open(log_path, "a") as log:
                    log.write(json.dumps(record) + "\n")
            if (
                len(val_set)
                and accelerator.is_main_process
                and not sharded  # the live modules hold only shards there
                and (step % config.validate_every == 0 or step == config.steps)
            ):
                _validate(
                    pipe,
                    val_set[0],
                    out / "validation" / f"step-{step:06d}.mp4",
                    config.validation_steps,
                    accelerator.device,
                )
                objective.train()
    progress.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    final = out / f"checkpoint-{config.steps}"
    return {
        "steps": step,
        "final_checkpoint": str(final),
        "losses": losses,
        "mean_loss_last": sum(losses[-5:]) / max(1, len(losses[-5:])) if losses else math.nan,
        "processes": accelerator.num_processes,
    }


def _save_ema(ema, path: Path) -> None:
    tensors = {
        f"shadow.{i:05d}": p.detach().cpu().contiguous() for i, p in enumerate(ema.shadow_params)
    }
    save_file(tensors, str(path))


def _load_ema(ema, path: Path, optimization_steps: int) -> None:
    tensors = load_file(str(path))
    shadow = [tensors[f"shadow.{i:05d}"] for i in range(len(tensors))]
    if [p.shape for p in shadow] != [p.shape for p in ema.shadow_params]:
        raise InputError(f"{path}: the EMA weights do not match this run's trained parameters")
    ema.load_state_dict({"shadow_params": shadow, "optimization_step": optimization_steps})


def _replica_spread(accelerator, params) -> float:
    """How far the processes' copies of the trained weights are apart (0 when data parallel
    training keeps them in step, as it must): spread of a float64 checksum over processes."""
    checksum = torch.stack([p.detach().double().sum() for p in params]).sum()
    gathered = accelerator.gather(checksum.reshape(1).to(accelerator.device))
    return float(gathered.max() - gathered.min())


def _trained_pipeline(accelerator, objective, pipe, ema, params):
    """The trained weights as a plain pipeline (main process; None elsewhere), built from
    accelerate's full state dict so it is right under DDP and FSDP alike; the EMA weights when
    EMA is on; LoRA merged in, so it loads like any checkpoint."""
    if ema is not None:
        ema.store(params)
        ema.copy_to(params)
    try:
        state = accelerator.get_state_dict(objective)  # collective under FSDP
        # The state may hold references to the live weights: copy them out before the live
        # (non-EMA) weights are put back.
        return _pipeline_from_state(pipe, state) if accelerator.is_main_process else None
    finally:
        if ema is not None:
            ema.restore(params)


def _pipeline_from_state(pipe, state: dict) -> FactorPortraitPipeline:
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


@torch.no_grad()
def _validate(pipe, sample: dict, path: Path, steps: int, device) -> None:
    from ..generation import label_untrained
    from ..io import write_video

    pipe.transformer.eval()
    batch = {k: v[None].to(device) for k, v in sample.items()}
    latents = {
        "reference_latents": batch["reference_latents"],
        "ray_latents": batch["ray_latents"],
        "normal_latents": batch["normal_latents"],
        "expression_codes": expression_codes(pipe.expression_encoder, batch),
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
