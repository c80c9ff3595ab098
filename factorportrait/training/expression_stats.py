"""The expression encoder's input statistics (issue 27): ``prepare`` measures the per-feature
mean and std of every expression input it caches (blendshapes, C3's crop landmarks, the image
backbone's pooled features) over the training split and writes them beside the index
(``expression_stats.json``); ``train`` puts the ones its encoder reads into the encoder's config
(``FactorPortraitExpressionEncoder.set_feature_statistics``), so every checkpoint it saves
carries them and the encoder's forward normalises alike in training and inference.

The statistics are over frames: every frame of every training sample is one observation; the
std is the population std (numpy's default, ddof=0), unfloored here (the encoder floors it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch

STATS_FILE = "expression_stats.json"
# Each code type's input, as prepare caches it.
CACHED_FIELDS = {
    "blendshapes": "blendshapes",
    "landmarks": "crop_landmarks",
    "image": "expression_features",
}


class RunningStatistics:
    """Per-feature mean and population std over rows added in batches (float64, shifted by the
    first row so the variance does not cancel for features far from zero)."""

    def __init__(self):
        self.count = 0
        self.shift = self.total = self.squares = None

    def add(self, rows: torch.Tensor) -> None:
        """Rows (..., features): every leading index is one observation."""
        rows = rows.detach().to("cpu", torch.float64).reshape(-1, rows.shape[-1])
        if not len(rows):
            return
        if self.shift is None:
            self.shift = rows[0].clone()
            self.total = torch.zeros_like(self.shift)
            self.squares = torch.zeros_like(self.shift)
        elif rows.shape[1] != len(self.shift):
            raise ValueError(f"features: {rows.shape[1]} per row after {len(self.shift)}")
        centred = rows - self.shift
        self.count += len(rows)
        self.total += centred.sum(0)
        self.squares += centred.square().sum(0)

    def result(self) -> dict:
        """{"mean": [...], "std": [...], "frames": n}."""
        if not self.count:
            raise ValueError("no rows to measure")
        centred_mean = self.total / self.count
        variance = (self.squares / self.count - centred_mean.square()).clamp_min(0)
        return {
            "mean": (centred_mean + self.shift).tolist(),
            "std": variance.sqrt().tolist(),
            "frames": self.count,
        }


def split_ids_digest(data: Path, split: str = "train") -> tuple[list[dict], str]:
    """The index rows of ``split`` and a digest of their ids: which samples statistics cover."""
    index = Path(data) / "index.jsonl"
    rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("split") == split]
    ids = "\n".join(sorted(row["id"] for row in rows))
    return rows, hashlib.sha256(ids.encode()).hexdigest()[:16]


def measure_prepared(data: str | Path) -> dict:
    """The statistics of every cached expression input over the training split of the
    prepared samples in ``data`` (only those tensors are read from each file): a dict by code
    type, plus which samples they cover (``samples``, ``ids_digest``) and, for the image
    features, the backbone that made them (``backbone_digest``, when all samples agree)."""
    from safetensors import safe_open

    data = Path(data)
    rows, digest = split_ids_digest(data)
    running = {kind: RunningStatistics() for kind in CACHED_FIELDS}
    backbones = set()
    for row in rows:
        with safe_open(str(data / row["file"]), framework="pt") as handle:
            keys = set(handle.keys())
            for kind, field in CACHED_FIELDS.items():
                if field in keys:
                    # (F, ...) per sample: one row per frame, as the encoder reads it
                    running[kind].add(handle.get_tensor(field).flatten(1))
        if "expression_features" in keys:
            backbones.add(row.get("backbone_digest"))
    stats = {"samples": len(rows), "ids_digest": digest}
    for kind, measured in running.items():
        if measured.count:
            stats[kind] = measured.result()
    if "image" in stats:
        if len(backbones) == 1 and None not in backbones:
            stats["image"]["backbone_digest"] = backbones.pop()
        else:  # features of several backbones mixed: no one backbone's statistics
            del stats["image"]
    return stats


def write_prepared_statistics(data: str | Path) -> dict:
    """Measure ``data``'s statistics and write them to ``data/expression_stats.json``
    (atomically); returns them."""
    data = Path(data)
    stats = measure_prepared(data)
    path = data / STATS_FILE
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(stats), encoding="utf-8")
    partial.replace(path)
    return stats


def encoder_features(encoder, batch: dict) -> tuple[torch.Tensor, bool]:
    """What the encoder reads from a batch of prepared samples, and whether it is the image
    backbone's pooled features: the cached features (or the crops, when prepare kept them
    instead), the blendshapes, or the crop landmarks (C3). Training's codes and the measured
    statistics both read it from here."""
    from ..models import expression_input

    if encoder.config.code_type == "image" and "expression_features" in batch:
        return batch["expression_features"], True
    return expression_input(encoder.config.code_type, batch), False


@torch.no_grad()
def measure_samples(encoder, samples: Iterable[dict]) -> dict:
    """The statistics of what ``encoder`` reads, over prepared samples (one at a time): for
    data prepared before ``prepare`` measured them, or image features another backbone made
    (then this encoder's backbone runs over the kept crops once)."""
    running = RunningStatistics()
    for sample in samples:
        features, pooled = encoder_features(encoder, {k: v[None] for k, v in sample.items()})
        if encoder.backbone is not None and not pooled:
            param = next(encoder.backbone.parameters())
            features = encoder.pooled_features(features.to(param.device, param.dtype))
        running.add(features)
    return running.result()


def install_statistics(encoder, data: str | Path, train_samples, log=print) -> str:
    """Put the statistics of what ``encoder`` reads over the training data into its config
    (before training; every checkpoint saved after carries them). ``train_samples``: the
    training samples as train reads them (``PreparedSamples``). Returns what was
    done: "measured by prepare", "measured now", "kept" or "layernorm". Prepare's statistics
    cover the whole training split of the index (a C1 filter leaves some of it out of training:
    a normalisation needs no exact statistics); measured now, they are over ``train_samples``.

    An encoder saved with statistics keeps them (its head was trained with them); one saved
    before them (``input_norm="layernorm"``) keeps its LayerNorm."""
    if encoder.config.input_norm != "fixed":
        log(
            "note: the checkpoint's expression encoder normalises by a LayerNorm (saved before "
            "fixed feature statistics): kept as it was trained"
        )
        return "layernorm"
    if encoder.has_feature_statistics:
        return "kept"
    data = Path(data)
    code_type = encoder.config.code_type
    stats = None
    path = data / STATS_FILE
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        _, digest = split_ids_digest(data)
        stats = saved.get(code_type) if saved.get("ids_digest") == digest else None
        if stats is not None and code_type == "image":
            # The cached features are this backbone's unless train reads the crops instead
            # (PreparedSamples.check_made_by): then the statistics are another backbone's.
            made_by = {row.get("backbone_digest") for row in train_samples.rows}
            if train_samples.use_crops or made_by != {stats.get("backbone_digest")}:
                stats = None
    source = "measured by prepare"
    if stats is None:
        log(
            f"note: --data {data}: no expression statistics of this checkpoint's inputs from "
            f"prepare ({STATS_FILE}); measuring them over the training samples now"
        )
        stats = measure_samples(encoder, train_samples)
        source = "measured now"
    encoder.set_feature_statistics(stats["mean"], stats["std"])
    return source
