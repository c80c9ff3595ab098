"""``train``: fine-tune a FactorPortrait pipeline on prepared samples with accelerate.

The steps of a run, each in its own module: the prepared samples (``data``), the flow-matching
objective with condition dropout (``objective``), what trains (``parameters``), checkpoints
with their trained ranges and the EMA (``checkpointing``) and validation videos
(``validation``). This module joins them: gradient checkpointing; mixed precision; new layers
only or the whole transformer; optional EMA; resumable (accelerate's state + the step); a
JSON-lines log and, when tensorboard is installed, tensorboard curves. Multi-GPU and FSDP come
from accelerate's own launcher (``accelerate launch -m factorportrait train ...``), nothing
home-made: the trained parts and the loss are one module (``FlowMatchingObjective``) so the
wrapper sees every trained parameter, checkpoints come from accelerate's full state dict, and
only the main process writes files; what FSDP2's sharded parameters need is in ``sharding``.
Each sample's noise is drawn from the step and its place in the step's global batch, so
N processes of batch B train as one process of batch N x B would. README: Training.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import InputError
from ..pipelines.checkpoints import component_digests
from ..pipelines.pipeline_factorportrait import FactorPortraitPipeline
from ..planning.guardrails import SAMPLE_KEYS, TrainedRanges, ranges_from_samples
from .checkpointing import (
    ema_weights,
    load_ema,
    replica_spread,
    save_checkpoint,
    save_ema,
    trained_pipeline,
)
from .config import TrainConfig
from .data import PreparedSamples
from .expression_stats import install_statistics
from .objective import (
    CONDITION_DROPS,
    FlowMatchingObjective,
    draw_randomness,
    expression_codes,
    flow_matching_sigmas,
    training_loss,
)
from .parameters import (
    freeze_pretrained_channels,
    frozen_in_trained,
    select_parameters,
    zero_pretrained_gradient,
)
from .sharding import fsdp_on_cpu, prepared_parameters, refuse_under_sharding, sharded
from .validation import validate

_RANGE_KEYS = {key for keys in SAMPLE_KEYS.values() for key in keys}

__all__ = [  # the names importers of this module have always found here
    "CONDITION_DROPS",
    "FlowMatchingObjective",
    "PreparedSamples",
    "draw_randomness",
    "expression_codes",
    "flow_matching_sigmas",
    "freeze_pretrained_channels",
    "frozen_in_trained",
    "select_parameters",
    "train",
    "training_loss",
]


def train(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    config: TrainConfig,
    *,
    cpu: bool = False,
) -> dict:
    """Train ``checkpoint`` on the prepared samples in ``data`` into the run folder ``out``
    (resuming where a run there stopped); returns the steps, the final checkpoint's path, the
    losses of this call's steps and the number of processes."""
    from accelerate.utils import set_seed

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator, tensorboard = _accelerator(config, out, cpu)
    set_seed(config.seed)
    pipe = _load_pipeline(checkpoint)
    train_set, val_set = _load_samples(data, pipe, config, accelerator)
    _expression_statistics(pipe, data, train_set, accelerator)
    ranges = _trained_ranges(train_set, accelerator)
    run = _TrainingRun(config, out, accelerator, pipe, val_set, ranges)
    run.build(train_set)
    if tensorboard:
        accelerator.init_trackers("factorportrait", config=config.model_dump())
    step, losses = run.optimise(from_step=run.resume())
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return {
        "steps": step,
        "final_checkpoint": str(out / f"checkpoint-{config.steps}"),
        "losses": losses,
        "mean_loss_last": sum(losses[-5:]) / max(1, len(losses[-5:])) if losses else math.nan,
        "processes": accelerator.num_processes,
        "main_process": accelerator.is_main_process,
    }


def _accelerator(config: TrainConfig, out: Path, cpu: bool):
    """The Accelerator of the run (and whether tensorboard logs), refusing what sharded
    training cannot do: FSDP2 trains everything data parallel does; FSDP1 (flattened
    parameters) and DeepSpeed keep the EMA and the frozen Wan channels out of reach."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    tensorboard = importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=cpu,
        project_dir=str(out),
        log_with="tensorboard" if tensorboard else None,
        # Each epoch's order from the seed and the epoch: a resumed run sees what it would have.
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    note = fsdp_on_cpu(accelerator, config.mixed_precision)
    if note and accelerator.is_main_process:
        print(note)
    refuse_under_sharding(accelerator, config)
    return accelerator, tensorboard


def sample_randomness(
    batch: dict, config: TrainConfig, step: int, first: int
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``draw_randomness`` for each sample of a process's batch from its own generator, seeded
    by the run's seed, the step and the sample's place in the step's global batch (``first``:
    this process's first): the same draws whatever the number of processes."""
    draws = [
        draw_randomness(
            {"target_latents": batch["target_latents"][i : i + 1]},
            config,
            torch.Generator().manual_seed((config.seed * 1_000_003 + step) * 100_003 + first + i),
        )
        for i in range(len(batch["target_latents"]))
    ]
    noise = torch.cat([d[0] for d in draws])
    sigma = torch.cat([d[1] for d in draws])
    keep = {name: torch.cat([d[2][name] for d in draws]) for name in draws[0][2]}
    return noise, sigma, keep


def _load_pipeline(checkpoint: str | Path) -> FactorPortraitPipeline:
    try:
        return FactorPortraitPipeline.from_pretrained(str(checkpoint), use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"--checkpoint {checkpoint}: cannot load it ({str(exc)[:160]})") from None


def _load_samples(
    data: str | Path, pipe, config: TrainConfig, accelerator
) -> tuple[PreparedSamples, PreparedSamples]:
    """The training split (C1-filtered as configured) and the validation split, checked
    against the checkpoint that will read them."""
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
    return train_set, val_set


def _expression_statistics(pipe, data, train_set: PreparedSamples, accelerator) -> None:
    """The expression encoder's input statistics into its config before anything trains:
    what prepare measured over the training split, or (data prepared before it measured them)
    measured now over the samples that train."""
    log = print if accelerator.is_main_process else (lambda *_: None)
    source = install_statistics(pipe.expression_encoder, data, train_set, log=log)
    if source.startswith("measured"):
        log(f"expression encoder: input statistics {source}")


def _trained_ranges(train_set: PreparedSamples, accelerator) -> TrainedRanges:
    """What the samples trained on cover (the C1-filtered training split, nothing else)."""
    recorded = [row for row in train_set.rows if all(key in row for key in _RANGE_KEYS)]
    if not recorded and accelerator.is_main_process:
        print(
            "note: the prepared samples record no ranges (prepared by an older version): "
            "the checkpoints record the default trained ranges"
        )
    return ranges_from_samples(train_set.rows)


@dataclass
class _TrainingRun:
    """One run's moving parts, so that each step of ``train`` reads as one call."""

    config: TrainConfig
    out: Path
    accelerator: object
    pipe: FactorPortraitPipeline
    val_set: PreparedSamples
    ranges: TrainedRanges
    objective: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    loader: torch.utils.data.DataLoader | None = None
    params: list = field(default_factory=list)
    ema: object = None
    masked_weight: torch.nn.Parameter | None = None

    @property
    def state_dir(self) -> Path:
        return self.out / "state"

    @property
    def step_file(self) -> Path:
        return self.out / "state" / "step.json"

    def build(self, train_set: PreparedSamples) -> None:
        """Mark what trains; the optimiser, the loader and the objective, prepared by
        accelerate."""
        config, pipe = self.config, self.pipe
        self.params = select_parameters(
            pipe.transformer, pipe.expression_encoder, config.trainable, config.lora_rank
        )
        pipe.vae.requires_grad_(False)
        if config.gradient_checkpointing:
            pipe.transformer.enable_gradient_checkpointing()
        # No weight decay: it would move the masked (frozen) Wan channels of the patch embedding.
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=0.0)
        loader = torch.utils.data.DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
        )
        objective = FlowMatchingObjective(pipe.transformer, pipe.expression_encoder)
        self.objective, self.optimizer, self.loader = self.accelerator.prepare(
            objective, optimizer, loader
        )
        # FSDP2 swapped the parameters for sharded ones: the EMA follows those.
        self.params = prepared_parameters(self.optimizer)
        if sharded(self.accelerator) and config.trainable != "full":
            # The gradient hook sat on the parameter FSDP2 replaced: zero after backward.
            live = self.accelerator.unwrap_model(self.objective).transformer
            self.masked_weight = live.patch_embedding.weight
        pipe.vae.to(self.accelerator.device)  # validation videos only (training uses latents)

    def resume(self) -> int:
        """Load the state a previous run saved here (and the EMA); the step to go on from."""
        step, saved_state = 0, {}
        if self.step_file.is_file():  # resume where the last run saved
            self.accelerator.load_state(str(self.state_dir))
            saved_state = json.loads(self.step_file.read_text())
            step = saved_state["step"]
        if self.config.ema_decay is not None:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(self.params, decay=self.config.ema_decay)
            ema_file = self.state_dir / "ema.safetensors"
            if "ema_steps" in saved_state and ema_file.is_file():
                load_ema(self.ema, ema_file, saved_state["ema_steps"])
                self.ema.to(self.accelerator.device)
        return step

    def optimise(self, from_step: int) -> tuple[int, list[float]]:
        """Optimiser steps from ``from_step`` to the configured number, logging, saving and
        validating as configured; the step reached and the losses of the steps taken (each
        the mean over processes)."""
        config, accelerator, step = self.config, self.accelerator, from_step
        self.objective.train()
        losses = []
        progress = tqdm(
            total=config.steps,
            initial=step,
            desc="training",
            unit="step",
            disable=not accelerator.is_local_main_process,
        )
        # A resumed run takes up the data where it stopped: that epoch's order, less the
        # batches already trained on.
        self.loader.set_epoch(step // len(self.loader))
        skip = step % len(self.loader)
        while step < config.steps:
            for batch in self.loader:
                if skip:
                    skip -= 1
                    continue
                if step >= config.steps:
                    break
                loss = self._optimiser_step(batch, step)
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
                    record = self._save(step, record)
                if record is not None and accelerator.is_main_process:
                    with open(self.out / "log.jsonl", "a") as log:
                        log.write(json.dumps(record) + "\n")
                if step % config.validate_every == 0 or step == config.steps:
                    self._validate(step)
        progress.close()
        return step, losses

    def _optimiser_step(self, batch: dict, step: int) -> torch.Tensor:
        """One optimiser step; the noise drawn for each sample from ``step`` and its place in
        the global batch (a resumed run goes on alike, any number of processes draws alike)."""
        accelerator = self.accelerator
        first = accelerator.process_index * len(batch["target_latents"])
        with accelerator.accumulate(self.objective):
            loss = self.objective(batch, *sample_randomness(batch, self.config, step, first))
            accelerator.backward(loss)
            if self.masked_weight is not None:
                zero_pretrained_gradient(self.masked_weight)
            self.optimizer.step()
            self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.step(self.params)
        return loss

    def _save(self, step: int, record: dict | None) -> dict | None:
        """accelerate's state (every process: accelerate coordinates), then the checkpoint of
        ``step`` with its trained ranges and the EMA (main process); the log record, with the
        replicas' spread under data parallel training."""
        accelerator = self.accelerator
        accelerator.save_state(str(self.state_dir))
        if accelerator.num_processes > 1 and not sharded(accelerator):
            record = record or {"step": step}
            record["replica_spread"] = replica_spread(accelerator, self.params)
        saved = trained_pipeline(accelerator, self.objective, self.pipe, self.ema, self.params)
        if self.ema is not None:  # as safetensors: nothing in state/ of ours is pickled
            ema_file = self.state_dir / "ema.safetensors"  # (gathered from every process)
            save_ema(self.ema, ema_file, write=accelerator.is_main_process)
        if accelerator.is_main_process:
            trained = self.config.mark_trained and step == self.config.steps
            status = "trained" if trained else "in-training"
            save_checkpoint(saved, self.out / f"checkpoint-{step}", status, self.ranges)
            saved_state = {"step": step}
            if self.ema is not None:
                saved_state["ema_steps"] = self.ema.optimization_step
            self.step_file.write_text(json.dumps(saved_state))
        accelerator.wait_for_everyone()
        return record

    def _validate(self, step: int) -> None:
        """The validation video of ``step`` (main process), with the EMA weights as checkpoints
        hold them. Under sharding the live modules hold only shards: the main process generates
        with the whole weights gathered as a checkpoint gathers them (one inference copy)."""
        accelerator = self.accelerator
        if not len(self.val_set):
            return
        if sharded(accelerator):
            pipe = trained_pipeline(accelerator, self.objective, self.pipe, self.ema, self.params)
            if pipe is not None:
                pipe.transformer.to(accelerator.device)
                pipe.expression_encoder.to(accelerator.device)
                self._write_validation(pipe, step)
            accelerator.wait_for_everyone()
        elif accelerator.is_main_process:
            with ema_weights(self.ema, self.params):  # the EMA weights, as checkpoints hold
                self._write_validation(self.pipe, step)
        self.objective.train()

    def _write_validation(self, pipe, step: int) -> None:
        validate(
            pipe,
            self.val_set[0],
            self.out / "validation" / f"step-{step:06d}.mp4",
            self.config.validation_steps,
            self.accelerator.device,
        )
