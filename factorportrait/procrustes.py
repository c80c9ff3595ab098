"""Least-squares similarity between point sets (Umeyama 1991), in 2-D or 3-D."""

from __future__ import annotations

import numpy as np


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum |s R source_i + t - target_i|^2, with R a proper rotation."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    dim = source.shape[1]
    mu_s, mu_t = source.mean(0), target.mean(0)
    xs, xt = source - mu_s, target - mu_t
    u, sigma, vt = np.linalg.svd(xt.T @ xs / len(source))
    d = np.ones(dim)
    d[-1] = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / ((xs**2).sum() / len(source)))
    return scale, rotation, mu_t - scale * rotation @ mu_s
