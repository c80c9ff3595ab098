"""The toy-world experiment: make the world, train a small FactorPortrait on it with the real
``train`` on the CPU (the full model, the ablations and the noise floor), and measure on
held-out samples what each condition carries: by swapping it for another sample's (the swap
ratios), and by the paired measure per factor (``paired_beta``: each held-out clip generated
again with one factor from a partner clip, against the true change). EXPERIMENTS.md has the
results."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..pipelines.pipeline_factorportrait import FactorPortraitPipeline
from ..training.config import TrainConfig
from ..training.data import PreparedSamples
from ..training.loop import train
from ..training.objective import expression_codes
from .head import face_points, head_mesh, make_subjects
from .model import set_latent_stats, toy_pipeline, toy_vae
from .samples import write_world
from .world import FACTOR_FIELDS, WORLDS, draw_sample

# The factors and the sample fields that carry each (the expression swap moves both of its
# codes, so the C3 model's landmarks are swapped too).
FACTORS = {
    "reference": ("reference_latents",),
    "normals": ("normal_latents",),
    "rays": ("ray_latents",),
    "expression": ("blendshapes", "crop_landmarks"),
}


@dataclass(frozen=True)
class Variant:
    """One trained model of the table: the full model or an ablation."""

    description: str
    use_normals: bool = True
    code_type: str = "blendshapes"
    exclude_combined: bool = False  # C1
    data: str = "data"  # "data-first-frame-rays": the old ray convention


VARIANTS = {
    "full": Variant("all factors"),
    "c2-no-normals": Variant("C2: no normal maps", use_normals=False),
    "c3-landmarks": Variant(
        "C3: landmark codes instead of expression latents", code_type="landmarks"
    ),
    "c1-no-combined": Variant(
        "C1: samples whose expression and camera both change left out", exclude_combined=True
    ),
    "first-frame-rays": Variant(
        "old ray convention: rays relative to the first output frame", data="data-first-frame-rays"
    ),
    "shuffled-codes": Variant(
        "noise floor: training samples' expression codes shuffled between samples",
        data="data-shuffled-codes",
    ),
}
# The noise level of the one-step denoising measure (see ``evaluate``).
DENOISE_SIGMA = 0.5
# Optimiser steps per minute of --minutes: measured on the 2-core CPU this was developed on
# (batch 8, loaded by other work), fixed so that the same --minutes gives the same run anywhere.
STEPS_PER_MINUTE = 120


@dataclass
class Settings:
    minutes: float
    seed: int = 0
    world: str = "original"  # a key of world.WORLDS: the graded worlds a-d, or the first one
    variants: tuple[str, ...] = tuple(VARIANTS)
    train_samples: int = 320
    val_samples: int = 48
    subjects: int = 8
    batch_size: int = 8
    learning_rate: float = 5e-4
    sampling_steps: int = 10
    # One thread: on a shared 2-core machine two threads ran a step 3-5x slower than one.
    threads: int = 1
    steps: int | None = None  # default: from minutes
    extra: dict = field(default_factory=dict)

    @property
    def training_steps(self) -> int:
        return self.steps or max(1, round(self.minutes * STEPS_PER_MINUTE))


def run(out: str | Path, settings: Settings, log=print) -> dict:
    """Make the world in ``out/world`` (kept and reused when it was made with the same
    settings), train each variant in ``out/<variant>``, evaluate it, and write
    ``out/results.json``; returns what it wrote."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run(Path(out), settings, log)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, settings: Settings, log) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    vae = world_vae(settings.seed, settings.world)
    world = out / "world"
    made = {k: getattr(settings, k) for k in ("seed", "train_samples", "val_samples", "subjects")}
    # Which world (and, since issue 27, that its samples have the head-frame C3 codes, the
    # shuffled copy and the counterfactuals): a world made before is made again.
    made["world"] = settings.world
    stamp = world / "settings.json"
    if not (stamp.is_file() and json.loads(stamp.read_text()) == made):
        log(f"making the world: {settings.train_samples} + {settings.val_samples} samples")
        write_world(
            world,
            toy_pipeline(vae, settings.seed),
            train_samples=settings.train_samples,
            val_samples=settings.val_samples,
            subjects=settings.subjects,
            seed=settings.seed,
            world=settings.world,
        )
        stamp.write_text(json.dumps(made))
    world_seconds = time.perf_counter() - began
    truth = json.loads((world / "truth.json").read_text())
    results = {"settings": {**made, "steps": settings.training_steps}, "variants": {}}
    for name in settings.variants:
        variant = VARIANTS[name]
        started = time.perf_counter()
        log(f"training {name} ({variant.description}): {settings.training_steps} steps")
        checkpoint = train_variant(out / name, vae, world / variant.data, variant, settings)
        trained_seconds = time.perf_counter() - started
        metrics = evaluate(checkpoint, world / variant.data, truth, settings)
        metrics["train_seconds"] = round(trained_seconds, 1)
        metrics["eval_seconds"] = round(time.perf_counter() - started - trained_seconds, 1)
        results["variants"][name] = metrics
        log(f"{name}: swap ratios {json.dumps(metrics['swap_ratio'])}")
        log(f"{name}: beta {json.dumps(metrics['beta'])}")
    if "full" in results["variants"]:
        results["swap_ratio"] = results["variants"]["full"]["swap_ratio"]
        results["beta"] = results["variants"]["full"]["beta"]
    results["world_seconds"] = round(world_seconds, 1)
    results["seconds"] = round(time.perf_counter() - began, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table(results))
    return results


def world_vae(seed: int, world: str = "original"):
    """The fixed random VAE, its latent statistics measured on clips of the world (from a
    generator of their own, so the world itself does not depend on them)."""
    vae = toy_vae(seed)
    spec = WORLDS[world]
    rng = np.random.default_rng(seed + 7)
    mesh, people, points = head_mesh(), make_subjects(spec.subjects or 4, rng), face_points(rng)
    kind = spec.kinds[-1]  # moving cameras where the world has them
    clips = [draw_sample(mesh, people, points, rng, kind, True, spec).target for _ in range(16)]
    videos = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    set_latent_stats(vae, videos)
    return vae


def train_variant(folder: Path, vae, data: Path, variant: Variant, settings: Settings) -> Path:
    """The real ``train`` on the CPU from a fresh model; the final checkpoint's folder."""
    steps = settings.training_steps
    start = folder / "start"
    if not (start / "model_index.json").is_file():
        pipe = toy_pipeline(
            vae, settings.seed, use_normals=variant.use_normals, code_type=variant.code_type
        )
        pipe.save_pretrained(str(start), safe_serialization=True)
    config = TrainConfig(
        steps=steps,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        seed=settings.seed,
        trainable="full",  # from scratch: everything learns
        gradient_checkpointing=False,
        save_every=steps,
        validate_every=steps,
        validation_steps=1,
        log_every=max(1, steps // 20),
        exclude_combined_changes=variant.exclude_combined,
        **settings.extra,
    )
    result = train(start, data, folder / "run", config, cpu=True)
    return Path(result["final_checkpoint"])


@torch.no_grad()
def evaluate(checkpoint: Path, data: Path, truth: dict, settings: Settings) -> dict:
    """Generate every held-out target (the same starting noise each time) with its own
    conditions and with each condition swapped for another held-out sample's; the mean squared
    error of the generated latents against the true ones, overall, on the head and off it,
    and per kind of sample."""
    pipe = FactorPortraitPipeline.from_pretrained(str(checkpoint), use_safetensors=True)
    pipe.transformer.eval()
    held_out = PreparedSamples(data, "val")
    ids = [row["id"] for row in held_out.rows]
    batch = {key: torch.stack([held_out[i][key] for i in range(len(ids))]) for key in held_out[0]}
    facts = [truth[i] for i in ids]
    head = torch.tensor([f["head_fraction"] for f in facts])[:, None]  # (B, 1, k+1, h, w)
    partners = swap_partners(batch, facts)

    def generate(fields: dict) -> torch.Tensor:
        latents = {
            "reference_latents": fields["reference_latents"],
            "ray_latents": fields["ray_latents"],
            "normal_latents": fields["normal_latents"],
            "expression_codes": expression_codes(pipe.expression_encoder, fields),
        }
        return pipe(
            condition_latents=latents,
            num_inference_steps=settings.sampling_steps,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(settings.seed),
            output_type="latent",
        ).frames

    noise = torch.randn(
        batch["target_latents"].shape, generator=torch.Generator().manual_seed(settings.seed)
    )

    def denoised(fields: dict) -> torch.Tensor:
        """One step from the truth noised half-way (sigma 0.5, the same noise for every
        condition): the model's estimate of the clean target. Far less of the error is the
        model's own uncertainty than from pure noise, so what a condition adds shows more."""
        x0 = fields["target_latents"].float()
        sigma = torch.full((len(x0),), DENOISE_SIGMA)
        noisy = (1 - DENOISE_SIGMA) * x0 + DENOISE_SIGMA * noise
        transformer = pipe.transformer
        velocity = transformer(
            noisy,
            sigma * 1000,
            reference_latents=fields["reference_latents"],
            ray_latents=fields["ray_latents"],
            normal_latents=fields["normal_latents"] if transformer.config.use_normals else None,
            expression_codes=expression_codes(pipe.expression_encoder, fields),
        ).sample
        return noisy - DENOISE_SIGMA * velocity.float()

    def errors(generated: torch.Tensor) -> dict[str, np.ndarray]:
        squared = (generated.float() - batch["target_latents"].float()) ** 2
        weights = {"all": torch.ones_like(head), "head": head, "background": 1 - head}
        return {
            region: ((squared * w).sum(dim=(1, 2, 3, 4)) / (w.sum(dim=(1, 2, 3, 4)) * 16))
            .numpy()
            .astype(float)
            for region, w in weights.items()
        }

    generated = generate(batch)
    correct = errors(generated)
    correct_denoised = errors(denoised(batch))["all"].mean()
    swapped, swapped_denoised = {}, {}
    for factor, keys in FACTORS.items():
        fields = dict(batch)
        for key in keys:
            fields[key] = batch[key][partners[factor]]
        swapped[factor] = errors(generate(fields))
        swapped_denoised[factor] = errors(denoised(fields))["all"].mean()
    kinds = {
        "frontal": [f["kind"] == "frontal" for f in facts],
        "novel": [f["kind"] == "novel" for f in facts],
        "moving": [f["kind"] == "moving" for f in facts],
        "combined": [f["kind"] == "moving" and f["changes_expression"] for f in facts],
        "expression-change": [f["changes_expression"] for f in facts],
    }
    mean = {region: float(values.mean()) for region, values in correct.items()}
    beta = {}
    for factor in FACTOR_FIELDS:
        partnered = [f.get("partners", {}).get(factor) for f in facts]
        if None in partnered:  # a factor the world holds: nothing to measure
            continue
        other = load_counterfactuals(data, factor, ids)
        beta[factor] = paired_beta(
            generated, generate(other), batch["target_latents"], other["target_latents"]
        )
    return {
        # The paired measure per factor (``paired_beta``): 1 renders the factor, 0 ignores it.
        "beta": beta,
        "error": mean,
        "error_by_kind": {
            kind: float(correct["all"][np.array(chosen)].mean())
            for kind, chosen in kinds.items()
            if any(chosen)  # (a world of held cameras has no novel or moving clips)
        },
        "swap_error": {f: float(s["all"].mean()) for f, s in swapped.items()},
        "swap_ratio": {f: float(s["all"].mean()) / mean["all"] for f, s in swapped.items()},
        "swap_ratio_head": {f: float(s["head"].mean()) / mean["head"] for f, s in swapped.items()},
        "swap_ratio_background": {
            f: float(s["background"].mean()) / mean["background"] for f, s in swapped.items()
        },
        # The share of held-out samples that a swap made worse (how consistent the trend is).
        "swap_worse_share": {
            f: float((s["all"] > correct["all"]).mean()) for f, s in swapped.items()
        },
        "denoise_error": float(correct_denoised),
        "denoise_swap_ratio": {f: float(e / correct_denoised) for f, e in swapped_denoised.items()},
        "held_out": len(ids),
    }


def load_counterfactuals(data: Path, factor: str, ids: list[str]) -> dict:
    """The held-out clips rendered with ``factor`` from their partners (``samples.write_world``),
    batched in the order of ``ids``."""
    from safetensors.torch import load_file

    folder = Path(data) / "counterfactual" / factor
    loaded = [load_file(str(folder / f"{name}.safetensors")) for name in ids]
    return {key: torch.stack([one[key] for one in loaded]) for key in loaded[0]}


def paired_beta(
    generated_a: torch.Tensor,
    generated_b: torch.Tensor,
    truth_a: torch.Tensor,
    truth_b: torch.Tensor,
) -> dict:
    """The paired measure of one factor: per held-out clip, beta = <G_A - G_B, x_A - x_B> /
    |x_A - x_B|^2, where x_A is the clip's true latents, x_B the same clip with the factor
    from its partner, and G_A, G_B what the model generates from their conditions (the same
    starting noise): 1 when the model renders the factor's change exactly, 0 when it ignores
    the factor. Its mean over the clips and the standard error of that mean."""
    change = (truth_a.float() - truth_b.float()).flatten(1)
    response = (generated_a.float() - generated_b.float()).flatten(1)
    betas = ((response * change).sum(1) / change.square().sum(1).clamp_min(1e-12)).numpy()
    n = len(betas)
    se = float(betas.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"mean": float(betas.mean()), "se": se, "n": n}


def swap_partners(batch: dict, facts: list[dict]) -> dict[str, np.ndarray]:
    """For each factor and held-out sample, the next held-out sample whose condition really
    differs: another subject for the reference, other rays (two frontal samples share the
    identity rays), another expression; normal maps always differ."""
    count = len(facts)

    def next_where(differs) -> np.ndarray:
        chosen = []
        for i in range(count):
            order = [(i + step) % count for step in range(1, count)]
            chosen.append(next((j for j in order if differs(i, j)), order[0]))
        return np.array(chosen)

    def fields_differ(key: str, tolerance: float):
        return lambda i, j: float((batch[key][i] - batch[key][j]).abs().max()) > tolerance

    return {
        "reference": next_where(lambda i, j: facts[i]["subject"] != facts[j]["subject"]),
        "normals": next_where(lambda i, j: True),
        "rays": next_where(fields_differ("ray_latents", 1e-3)),
        "expression": next_where(fields_differ("blendshapes", 0.2)),
    }


def table(results: dict) -> str:
    """The results as a Markdown table: one row per trained model."""
    lines = [
        "| model | error | head | background | novel | moving | combined | "
        "ref swap | normals swap | rays swap | expr swap | one-step: ref | normals | rays | expr | "
        "beta: reference | head pose | camera | expression |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["variants"].items():
        kinds = m["error_by_kind"]
        ratios = m["swap_ratio"]
        cells = [
            name,
            *(f"{m['error'][r]:.3f}" for r in ("all", "head", "background")),
            *(f"{kinds[k]:.3f}" if k in kinds else "-" for k in ("novel", "moving", "combined")),
            *(f"{ratios[f]:.3f}x" for f in FACTORS),
            *(f"{m['denoise_swap_ratio'][f]:.3f}x" for f in FACTORS),
            *(_beta_cell(m.get("beta", {}).get(f)) for f in FACTOR_FIELDS),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _beta_cell(beta: dict | None) -> str:
    return "-" if beta is None else f"{beta['mean']:.4f} ± {beta['se']:.4f}"
