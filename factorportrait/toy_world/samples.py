"""The toy world written as ``prepare`` writes its samples, so the real ``train`` reads them
unchanged: latents of target, reference and normal maps by the checkpoint's VAE, packed Plücker
rays relative to the reference camera, blendshapes, crop landmarks, and the index rows.
Expression reaches the model as its known parameters in the ``blendshapes`` code (eyeBlinkLeft,
eyeBlinkRight, jawOpen) or, for the C3 ablation, as face landmarks in the head's own frame
(``head.crop_landmarks``). What only the experiment needs (the head's pixels, the sample's kind,
each held-out clip's partners) is kept apart in ``truth.json``. Beside the samples as prepare
writes them: the old ray convention, the noise floor's shuffled codes and each held-out clip's
counterfactuals (``world.with_partners_factor``).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import save_file

from ..config import LATENT
from ..models import pack_plucker
from ..modes import Mode
from ..pipelines.checkpoints import component_digests
from ..training.samples import sample_ranges
from ..viewpoint import plucker_rays
from .head import SIZE, face_points, head_mesh, make_subjects
from .world import (
    FRAMES,
    WORLDS,
    WorldSample,
    draw_sample,
    factor_partners,
    render_clip,
    with_partners_factor,
)

BLENDSHAPES = 52
EYE_BLINK = (9, 10)  # MediaPipe's eyeBlinkLeft, eyeBlinkRight
JAW_OPEN = 25
# The old ray convention: rays relative to the first output frame's camera, not the reference's.
RAY_CONVENTIONS = ("reference", "first-frame")
ENCODE_BATCH = 64
# The data folders a world writes: as prepare writes them, the old ray convention, and the
# noise floor (training samples' expression codes shuffled between samples; held-out ones kept).
DATA_FOLDERS = {
    "reference": "data",
    "first-frame": "data-first-frame-rays",
    "shuffled": "data-shuffled-codes",
}
CODE_FIELDS = ("blendshapes", "crop_landmarks")


def _videos(clips: list[np.ndarray]) -> torch.Tensor:
    """[(F, H, W, 3) uint8] -> (B, 3, F, H, W) in [-1, 1], as prepare feeds the VAE."""
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


@torch.no_grad()
def encode_samples(samples: list[WorldSample], pipeline) -> list[dict]:
    """The latents ``prepare`` caches (target, reference, normal maps), for a batch of samples
    at once (the Wan VAE is many times faster per clip in a batch on a CPU)."""
    targets = pipeline.encode_video(_videos([s.target for s in samples]))
    references = pipeline.encode_video(_videos([s.reference[None] for s in samples]))
    normals = torch.from_numpy(np.stack([s.normals for s in samples])).permute(0, 4, 1, 2, 3)
    normal_latents = pipeline.encode_video(normals.float())
    return [
        {"target_latents": t, "reference_latents": r, "normal_latents": n}
        for t, r, n in zip(targets, references, normal_latents, strict=True)
    ]


def sample_tensors(sample: WorldSample, latents: dict, ray_convention: str = "reference") -> dict:
    """The tensors ``prepare`` caches for one sample (see ``training.prepare``), with its
    ``latents`` from ``encode_samples`` and rays in the given convention."""
    origin = sample.reference_c2w if ray_convention == "reference" else sample.c2w[0]
    rays = plucker_rays(sample.K, sample.c2w, SIZE, SIZE, reference_c2w=origin)
    blendshapes = np.zeros((FRAMES, BLENDSHAPES), np.float32)
    blendshapes[:, EYE_BLINK[0]] = blendshapes[:, EYE_BLINK[1]] = sample.eyes
    blendshapes[:, JAW_OPEN] = sample.mouth
    tensors = {
        **latents,
        "ray_latents": pack_plucker(torch.from_numpy(rays)[None].float())[0],
        "blendshapes": torch.from_numpy(blendshapes),
        "crop_landmarks": torch.from_numpy(sample.crop_landmarks).float(),
    }
    return {k: v.contiguous().cpu() for k, v in tensors.items()}


def sample_metadata(sample: WorldSample, blendshapes: torch.Tensor) -> dict[str, str]:
    """The index row ``prepare`` records (mode, the C1 filter's fields, the covered ranges)."""
    mode = {"frontal": Mode.FRONTAL_DYNAMIC, "novel": Mode.NOVEL_DYNAMIC}.get(
        sample.kind, Mode.ALL_DYNAMIC
    )
    change = float(np.ptp(blendshapes.numpy(), axis=0).max())
    # Measured by training's own function, as prepare measures a real sample.
    covered = sample_ranges(
        SimpleNamespace(
            head_pose=sample.head_pose,
            c2w=sample.c2w,
            K=sample.K,
            reference_c2w=sample.reference_c2w,
            height=SIZE,
        )
    )
    ranges = {key: f"{value:.3f}" for key, value in covered.items()}
    return {
        "mode": str(mode),
        "frames": str(FRAMES),
        "height": str(SIZE),
        "width": str(SIZE),
        "expression_change": f"{change:.4f}",
        "has_expression_change": str(change > 0.3).lower(),
        "has_camera_change": str(sample.kind == "moving").lower(),
        "has_crops": "false",
        "warnings": "",
        **ranges,
    }


def head_fraction(mask: np.ndarray) -> np.ndarray:
    """(k+1, h, w): the fraction of each latent cell's pixels on the head, per latent frame
    (frame 0 alone, then groups of 4, as the VAE folds them)."""
    groups = [mask[:1]] + [mask[i : i + 4] for i in range(1, len(mask), LATENT.frames_per_latent)]
    s = LATENT.spatial
    cells = [g.reshape(len(g), SIZE // s, s, SIZE // s, s).mean(axis=(0, 2, 4)) for g in groups]
    return np.stack(cells)


def _index_row(metadata: dict, name: str) -> dict:
    first = ("id", "file", "split", "mode")
    row = {**metadata, "file": f"samples/{name}.safetensors"}
    return {**{k: row[k] for k in first}, **{k: row[k] for k in sorted(row) if k not in first}}


def write_world(
    out: str | Path,
    pipeline,
    *,
    train_samples: int,
    val_samples: int,
    subjects: int,
    seed: int,
    world: str = "original",
) -> dict:
    """Write the world's samples three times, each folder with ``index.jsonl`` and the
    expression inputs' statistics that prepare writes (``expression_stats.json``):
    ``out/data`` (rays relative to the reference camera, as prepare writes them),
    ``out/data-first-frame-rays`` (the old convention, rays relative to the first output frame)
    and ``out/data-shuffled-codes`` (the noise floor: the training samples' expression codes
    shuffled between samples, the held-out ones as they are). Each held-out clip is also
    rendered with one factor at a time taken from a partner clip (``with_partners_factor``), in
    ``<folder>/counterfactual/<factor>/<id>.safetensors``, for the factors the world varies;
    ``out/truth.json`` names the partners. ``world``: a key of WORLDS. Returns counts."""
    from ..training.expression_stats import write_prepared_statistics

    spec = WORLDS[world]
    subjects = spec.subjects or subjects
    out = Path(out)
    rng = np.random.default_rng(seed)
    mesh = head_mesh()
    people = make_subjects(subjects, rng)
    points = face_points(np.random.default_rng(seed + 1))
    made_by = component_digests(pipeline)
    folders = {key: out / name for key, name in DATA_FOLDERS.items()}
    rows = {key: [] for key in folders}
    truth = {}
    for folder in folders.values():
        (folder / "samples").mkdir(parents=True, exist_ok=True)
    total = train_samples + val_samples
    kinds = spec.kinds
    plan = []
    for number in range(total):
        split = "train" if number < train_samples else "val"
        # Held-out: every kind with and without an expression change, in turn.
        kind = kinds[number % len(kinds)] if split == "val" else str(rng.choice(kinds))
        changes = (number // len(kinds)) % 2 == 0 if split == "val" else bool(rng.integers(2))
        plan.append((number, split, kind, changes))
    written, held_out = {}, []
    for start in range(0, total, ENCODE_BATCH):
        batch = plan[start : start + ENCODE_BATCH]
        samples = [draw_sample(mesh, people, points, rng, k, c, spec) for _, _, k, c in batch]
        for (number, split, kind, changes), sample, latents in zip(
            batch, samples, encode_samples(samples, pipeline), strict=True
        ):
            name = f"{split}-{number:05d}"
            for convention in RAY_CONVENTIONS:
                tensors = sample_tensors(sample, latents, convention)
                metadata = {
                    **sample_metadata(sample, tensors["blendshapes"]),
                    "id": name,
                    "clip": name,
                    "split": split,
                    "reference_clip": name,
                    **made_by,
                }
                folder = folders[convention]
                save_file(tensors, str(folder / "samples" / f"{name}.safetensors"), metadata)
                rows[convention].append(_index_row(metadata, name))
                if convention == "reference":
                    written[name] = (tensors, metadata)
            truth[name] = {
                "split": split,
                "kind": kind,
                "changes_expression": changes,
                "subject": sample.subject,
                "head_fraction": head_fraction(sample.head_mask).round(4).tolist(),
            }
            if split == "val":
                held_out.append((name, sample.draw))
            if number == train_samples:  # one held-out sample as pictures, to look at
                _save_strip(out / "example.png", sample)
    _write_shuffled(folders["shuffled"], written, np.random.default_rng(seed + 2))
    rows["shuffled"] = rows["reference"]
    _write_counterfactuals(folders, held_out, spec, mesh, people, points, pipeline, truth)
    for key, folder in folders.items():
        lines = "".join(json.dumps(row) + "\n" for row in rows[key])
        (folder / "index.jsonl").write_text(lines)
        write_prepared_statistics(folder)
    (out / "truth.json").write_text(json.dumps(truth))
    return {"train": train_samples, "val": val_samples, "subjects": subjects}


def _write_shuffled(folder: Path, written: dict, rng: np.random.Generator) -> None:
    """The noise floor's samples: each training sample with another's expression codes (a
    random cycle through all of them, so none keeps its own); held-out samples unchanged."""
    train = [name for name in written if name.startswith("train-")]
    order = [train[i] for i in rng.permutation(len(train))]
    donor = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    for name, (tensors, metadata) in written.items():
        if name in donor:
            codes = {key: written[donor[name]][0][key] for key in CODE_FIELDS}
            tensors = {**tensors, **codes}
        save_file(tensors, str(folder / "samples" / f"{name}.safetensors"), metadata)


def _write_counterfactuals(folders, held_out, spec, mesh, people, points, pipeline, truth):
    """Each held-out clip rendered again with one factor from its partner (the paired
    measure's x_B), for every factor the world varies; truth.json gets the partners."""
    names = [name for name, _ in held_out]
    draws = [draw for _, draw in held_out]
    partners = factor_partners(draws, spec.varies(len(people)))
    for name in names:
        truth[name]["partners"] = {}
    for factor, chosen in partners.items():
        changed = [
            with_partners_factor(draw, draws[j], factor)
            for draw, j in zip(draws, chosen, strict=True)
        ]
        for start in range(0, len(changed), ENCODE_BATCH):
            part = changed[start : start + ENCODE_BATCH]
            samples = [render_clip(mesh, people, points, d, spec.features) for d in part]
            for offset, (sample, latents) in enumerate(
                zip(samples, encode_samples(samples, pipeline), strict=True)
            ):
                number = start + offset
                name = names[number]
                truth[name]["partners"][factor] = names[chosen[number]]
                for key, folder in folders.items():
                    convention = "first-frame" if key == "first-frame" else "reference"
                    tensors = sample_tensors(sample, latents, convention)
                    target = folder / "counterfactual" / factor
                    target.mkdir(parents=True, exist_ok=True)
                    save_file(tensors, str(target / f"{name}.safetensors"))


def _save_strip(path: Path, sample: WorldSample) -> None:
    """The reference, then the target frames, above their normal maps (a PNG)."""
    from PIL import Image

    normals = ((sample.normals + 1) * 127.5).clip(0, 255).astype(np.uint8)
    normals[~sample.head_mask] = 0
    blank = np.zeros_like(sample.reference)
    top = np.concatenate([sample.reference, *sample.target], axis=1)
    bottom = np.concatenate([blank, *normals], axis=1)
    Image.fromarray(np.concatenate([top, bottom], axis=0)).resize(
        (top.shape[1] * 2, top.shape[0] * 4), Image.NEAREST
    ).save(path)
