"""LPIPS and FVD when their networks are available (README: Evaluation); skipped otherwise.

Neither network can be fetched here, so both are given by the user:

- LPIPS (Zhang et al. 2018, the VGG variant): one safetensors file with VGG16's convolutions
  under torchvision's names (``features.N.weight/bias``) and LPIPS's linear heads under the
  ``lpips`` package's names (``lin0.model.1.weight`` ... ``lin4``). ``lpips_distance`` is
  the formula on any feature network, so it is tested with tiny random ones.
- FVD (Unterthiner et al. 2018): the Fréchet distance between I3D features of real and
  generated videos. The I3D network is a ``torch.export`` program (``.pt2``) or a TorchScript
  file (the ``i3d_torchscript.pt`` that common FVD code uses): both run code, so load only a
  file you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from . import metrics

SKIPPED = {
    "lpips": "skipped: no LPIPS weights given (--lpips-weights; README: Evaluation)",
    "fvd": "skipped: no I3D network given (--fvd-i3d; README: Evaluation)",
}
# VGG16's feature layers (torchvision's indices) and the ReLUs whose outputs LPIPS compares.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22, 29)
# LPIPS's input scaling (the lpips package's ScalingLayer), for inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def lpips_distance(feature_layers, linear_weights, a, b) -> np.ndarray:
    """LPIPS per image: sum over layers l of mean over pixels of sum_c w_lc (a_l - b_l)_c^2,
    with each layer's features unit-normalised over channels.

    feature_layers: a callable from (B,3,H,W) in [-1, 1] to a list of (B,C_l,H_l,W_l);
    linear_weights: one (C_l,) tensor per layer; a, b: (B,3,H,W) in [-1, 1]. -> (B,)"""
    import torch

    with torch.no_grad():
        total = 0.0
        for fa, fb, weight in zip(
            feature_layers(a), feature_layers(b), linear_weights, strict=True
        ):
            fa = fa / (fa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            difference = (fa - fb).pow(2) * weight.reshape(1, -1, 1, 1).to(fa)
            total = total + difference.sum(dim=1).mean(dim=(1, 2))
    return np.asarray(total.float().cpu().numpy(), np.float64)


class LPIPS:
    """LPIPS-VGG from a safetensors file (see the module docstring); ``__call__`` on two uint8
    videos (F,H,W,3) gives LPIPS per frame."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        import torch
        from safetensors.torch import load_file
        from torch import nn

        try:
            state = load_file(str(path))
        except (OSError, ValueError) as exc:
            raise InputError(f"--lpips-weights {path}: cannot read it ({exc})") from None
        # VGG16's order of layers; each convolution's width is read from the weights, so
        # narrower networks of the same layout (the tests' tiny ones) load too.
        layers, channels = [], 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            weight = state.get(f"features.{len(layers)}.weight")
            if weight is None:
                raise InputError(f"--lpips-weights {path}: no features.{len(layers)}.weight")
            layers += [nn.Conv2d(channels, weight.shape[0], 3, padding=1), nn.ReLU()]
            channels = weight.shape[0]
        self.features = nn.Sequential(*layers)
        try:
            self.features.load_state_dict(
                {k.removeprefix("features."): v for k, v in state.items() if "features." in k}
            )
            self.weights = [state[f"lin{i}.model.1.weight"].flatten() for i in range(5)]
        except (RuntimeError, KeyError) as exc:
            raise InputError(f"--lpips-weights {path}: not LPIPS-VGG weights ({exc})") from None
        self.features.eval().to(device)
        self.device = torch.device(device)

    def layers(self, x):
        import torch

        shift = torch.tensor(LPIPS_SHIFT, device=x.device).reshape(1, 3, 1, 1)
        scale = torch.tensor(LPIPS_SCALE, device=x.device).reshape(1, 3, 1, 1)
        x, taps = (x - shift) / scale, []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG16_TAPS:
                taps.append(x)
        return taps

    def __call__(self, a: np.ndarray, b: np.ndarray, batch: int = 8) -> np.ndarray:
        return np.concatenate(
            [
                lpips_distance(
                    self.layers,
                    self.weights,
                    _to_tensor(a[start : start + batch], self.device),
                    _to_tensor(b[start : start + batch], self.device),
                )
                for start in range(0, len(a), batch)
            ]
        )


def _to_tensor(frames: np.ndarray, device):
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    return (tensor / 127.5 - 1).to(device)


class I3DFeatures:
    """Video features for FVD from a trusted network file: ``torch.export``'s ``.pt2`` (made
    with example input (1,3,frames,224,224)) or, for the I3D files common FVD code ships,
    TorchScript. Called on (1,3,T,224,224) in [-1, 1], it returns (1,D)."""

    def __init__(self, path: str | Path, device: str = "cpu", frames: int = 16):
        import torch

        try:
            if Path(path).suffix == ".pt2":
                self.network = torch.export.load(str(path)).module().to(device)
            else:
                self.network = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, OSError, ValueError) as exc:
            raise InputError(f"--fvd-i3d {path}: cannot load it ({exc})") from None
        self.device, self.frames = torch.device(device), frames

    def __call__(self, video: np.ndarray) -> np.ndarray:
        """(F,H,W,3) uint8 -> (D,): the first ``frames`` frames (the last held if fewer)."""
        import torch
        import torch.nn.functional as functional

        picks = np.minimum(np.arange(self.frames), len(video) - 1)
        tensor = _to_tensor(video[picks], self.device)
        tensor = functional.interpolate(tensor, size=(224, 224), mode="bilinear")
        with torch.no_grad():
            features = self.network(tensor.permute(1, 0, 2, 3)[None])
        return features.reshape(-1).float().cpu().numpy().astype(np.float64)


def fvd(real_features: np.ndarray, generated_features: np.ndarray) -> float:
    """FVD from per-video features (N,D) of real and generated videos (N >= 2 each; papers use
    hundreds: with few videos the covariance, and so the figure, is unreliable)."""
    if len(real_features) < 2 or len(generated_features) < 2:
        raise ValueError("FVD needs at least two videos on each side")
    return metrics.frechet_distance(
        *metrics.feature_statistics(real_features),
        *metrics.feature_statistics(generated_features),
    )
