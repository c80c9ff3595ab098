"""FactorPortrait: controllable portrait animation with disentangled expression, head pose and
viewpoint. See README.md for the architecture.

Heavy pieces (torch, diffusers, mediapipe) load on first use, so ``import factorportrait`` and
the CLI's ``--help`` stay fast.
"""

__version__ = "0.1.0"

from .modes import MODES, Mode

_LAZY = {
    "FactorPortraitPipeline": "factorportrait.pipelines.pipeline_factorportrait",
    "FactorPortraitPipelineOutput": "factorportrait.pipelines.pipeline_factorportrait",
    "FactorPortraitTransformer3DModel": "factorportrait.models",
    "FactorPortraitExpressionEncoder": "factorportrait.models",
    "Conditioning": "factorportrait.conditioning",
    "ConditioningSettings": "factorportrait.conditioning",
    "build_conditioning": "factorportrait.conditioning",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'factorportrait' has no attribute {name!r}")


__all__ = ["MODES", "Mode", "__version__", *_LAZY]
