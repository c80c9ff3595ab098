"""The prepared samples ``prepare`` writes, as the dataset ``train`` reads (README: Training)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import InputError
from .config import EXPRESSION_CHANGE


class PreparedSamples(torch.utils.data.Dataset):
    """Samples written by ``prepare``, loaded lazily (one safetensors file each). ``rows``: the
    index rows of the split (each sample's string metadata), after the C1 filter."""

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
