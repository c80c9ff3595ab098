"""Least-squares similarity between point sets (Umeyama 1991), in 2-D or 3-D.

scikit-image implements it (``SimilarityTransform.from_estimate``); this adapter only returns
the pieces our callers use: scale, rotation and translation separately.
"""

from __future__ import annotations

import numpy as np
from skimage.transform import SimilarityTransform


def umeyama(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) minimising sum |s R source_i + t - target_i|^2, with R a proper rotation."""
    source, target = np.asarray(source, float), np.asarray(target, float)
    dim = source.shape[1]
    transform = SimilarityTransform.from_estimate(source, target)
    if not transform:
        raise ValueError(f"no similarity fits these points ({transform})")
    linear = transform.params[:dim, :dim]
    scale = float(abs(np.linalg.det(linear)) ** (1.0 / dim))
    return scale, linear / scale, transform.params[:dim, dim].copy()
