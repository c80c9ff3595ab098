"""Face tracking: MediaPipe Face Landmarker, its model file, clip assembly and smoothing."""

from . import model_file
from .clip import TrackedClip, assemble_clip, landmark_jitter, smooth_clip
from .landmarker import NUM_BLENDSHAPES, NUM_LANDMARKS, FaceObservation, FaceTracker
from .model_file import ModelFileError, resolve_face_landmarker
from .smoothing import smooth_zero_lag

__all__ = [
    "NUM_BLENDSHAPES",
    "NUM_LANDMARKS",
    "FaceObservation",
    "FaceTracker",
    "ModelFileError",
    "TrackedClip",
    "assemble_clip",
    "landmark_jitter",
    "model_file",
    "resolve_face_landmarker",
    "smooth_clip",
    "smooth_zero_lag",
]
