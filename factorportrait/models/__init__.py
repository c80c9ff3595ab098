"""Networks, one per file: the transformer (Wan blocks + condition fusion + expression
controller) and the expression encoder."""

from .expression_encoder import FactorPortraitExpressionEncoder, expression_input
from .packing import aggregate_codes, group_frames, latent_frames, pack_plucker
from .transformer_factorportrait import (
    ExpressionController,
    FactorPortraitTransformer3DModel,
    PerFrameModulatedWanBlock,
)

__all__ = [
    "ExpressionController",
    "FactorPortraitExpressionEncoder",
    "FactorPortraitTransformer3DModel",
    "PerFrameModulatedWanBlock",
    "aggregate_codes",
    "expression_input",
    "group_frames",
    "latent_frames",
    "pack_plucker",
]
