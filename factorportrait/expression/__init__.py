"""The expression factor's CPU side: face crops aligned for the expression encoder, and the
landmarks in the head's own frame (the C3 ablation's codes, ``landmarks``). MediaPipe's 52 blendshapes come with the tracking;
the encoder network itself is a model (``factorportrait.models.expression_encoder``)."""

from .crops import CROP_SIZE, aligned_crops, alignment_matrix
from .landmarks import head_frame_landmarks

__all__ = [
    "CROP_SIZE",
    "aligned_crops",
    "alignment_matrix",
    "head_frame_landmarks",
]
