"""A tracked driving clip as per-frame arrays: gaps filled, optionally smoothed.

Frames where the face was lost are filled by interpolation between the tracked frames around
them (rotations by slerp) and held at the ends; how many were filled is reported. A clip with no
face at all is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ..errors import InputError
from .landmarker import FaceObservation
from .smoothing import smooth_zero_lag


@dataclass(frozen=True)
class TrackedClip:
    times: np.ndarray  # (N,) seconds
    landmarks: np.ndarray  # (N, 478, 3) pixels
    rotations: np.ndarray  # (N, 3, 3) head -> camera (OpenCV)
    translations: np.ndarray  # (N, 3) cm, camera frame
    blendshapes: np.ndarray  # (N, 52)
    tracked: np.ndarray  # (N,) bool: False where the frame was filled
    faces_found: np.ndarray  # (N,) faces seen in each frame
    smoothed: bool = False

    def __len__(self) -> int:
        return len(self.times)

    @property
    def filled(self) -> int:
        return int((~self.tracked).sum())

    def head_to_camera(self) -> np.ndarray:
        poses = np.tile(np.eye(4), (len(self), 1, 1))
        poses[:, :3, :3] = self.rotations
        poses[:, :3, 3] = self.translations
        return poses

    def subset(self, indices: np.ndarray) -> TrackedClip:
        return replace(
            self,
            times=self.times[indices],
            landmarks=self.landmarks[indices],
            rotations=self.rotations[indices],
            translations=self.translations[indices],
            blendshapes=self.blendshapes[indices],
            tracked=self.tracked[indices],
            faces_found=self.faces_found[indices],
        )


def assemble_clip(
    observations: list[FaceObservation | None], times: np.ndarray, *, name: str = "driving video"
) -> TrackedClip:
    times = np.asarray(times, dtype=np.float64)
    found = np.array([o is not None for o in observations])
    if not found.any():
        # Frames looked at: a driving clip is sampled once per output frame (a short clip repeats).
        raise InputError(
            f"{name}: no face found in any of the {len(observations)} frames looked at"
        )
    known = np.flatnonzero(found)
    obs = [observations[i] for i in known]
    t_known = times[known]

    def fill(values: np.ndarray) -> np.ndarray:
        flat = values.reshape(len(values), -1)
        out = np.empty((len(times), flat.shape[1]))
        for d in range(flat.shape[1]):  # np.interp holds the end values: what we want
            out[:, d] = np.interp(times, t_known, flat[:, d])
        return out.reshape((len(times),) + values.shape[1:])

    landmarks = fill(np.stack([o.landmarks for o in obs]))
    blendshapes = fill(np.stack([o.blendshapes for o in obs]))
    translations = fill(np.stack([o.head_to_camera[:3, 3] for o in obs]))
    rotations_known = Rotation.from_matrix(np.stack([o.head_to_camera[:3, :3] for o in obs]))
    if len(known) == 1:
        rotations = np.repeat(rotations_known.as_matrix(), len(times), axis=0)
    else:
        clamped = np.clip(times, t_known[0], t_known[-1])
        rotations = Slerp(t_known, rotations_known)(clamped).as_matrix()
    faces = np.array([o.faces_found if o is not None else 0 for o in observations])
    return TrackedClip(times, landmarks, rotations, translations, blendshapes, found, faces)


def smooth_clip(clip: TrackedClip, *, min_cutoff: float = 1.0, beta: float = 0.05) -> TrackedClip:
    """Zero-lag One Euro smoothing of pose, landmarks and blendshapes."""
    params = {"min_cutoff": min_cutoff, "beta": beta}
    # Rotations as rotation vectors relative to the first frame: small, no wrap-around.
    first = Rotation.from_matrix(clip.rotations[0])
    relative = (first.inv() * Rotation.from_matrix(clip.rotations)).as_rotvec()
    # The cutoff adapts to speed in each channel's own units: degrees, cm, pixels, [0, 1].
    rotvec = np.deg2rad(smooth_zero_lag(np.rad2deg(relative), clip.times, **params))
    rotations = (first * Rotation.from_rotvec(rotvec)).as_matrix()
    translations = smooth_zero_lag(clip.translations, clip.times, **params)
    landmarks = smooth_zero_lag(clip.landmarks, clip.times, **params)
    blendshapes = np.clip(
        smooth_zero_lag(clip.blendshapes * 100.0, clip.times, **params) / 100.0, 0.0, 1.0
    )
    return replace(
        clip,
        rotations=rotations,
        translations=translations,
        landmarks=landmarks,
        blendshapes=blendshapes,
        smoothed=True,
    )


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Frame-to-frame jitter of landmarks (F, N, >=2) in pixels: the median over frames of the
    mean size of the second temporal difference, which is zero for a still or steadily moving
    face, so what remains is noise. Shared by the preview's summary and the evaluation."""
    if len(landmarks) < 3:
        return 0.0
    points = landmarks[..., :2]
    second = points[2:] - 2 * points[1:-1] + points[:-2]
    return float(np.median(np.linalg.norm(second, axis=-1).mean(axis=1)))
