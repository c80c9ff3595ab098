"""The conditioning core: the hall where the factors meet. ``build_conditioning`` (inference)
and training's sample builder compose the same named stages into one Conditioning bundle."""

from .build import build_conditioning
from .bundle import Conditioning, ConditioningSettings
from .report import ConditioningReport

__all__ = ["Conditioning", "ConditioningReport", "ConditioningSettings", "build_conditioning"]
