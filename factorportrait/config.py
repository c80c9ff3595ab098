"""Project-wide defaults and limits, in one place (README: Limits).

Every surface (CLI, Python API, web app) validates against these, so the numbers shown in the
README and the UI are the numbers enforced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class LatentGeometry:
    """The Wan VAE's compression and the transformer's patch: how frames and pixels become
    latent frames and tokens. The one home of these numbers (ARCHITECTURE.md: The tensor
    contract)."""

    frames_per_latent: int = 4  # time: frame 0 alone, then groups of 4 per latent frame
    spatial: int = 8  # the VAE: 8x8 pixels per latent pixel
    patch: int = 2  # the transformer's 2x2 patch embedding

    def latent_frames(self, frames: int) -> int:
        """F = 4k+1 frames -> k+1 latent frames."""
        return (frames - 1) // self.frames_per_latent + 1

    def fits(self, frames: int) -> bool:
        """Whether a frame count is of the form 4k+1."""
        return frames >= 1 and (frames - 1) % self.frames_per_latent == 0

    def trimmed(self, frames: int) -> int:
        """The largest 4k+1 frame count not above ``frames``."""
        return frames - (frames - 1) % self.frames_per_latent

    @property
    def pixels_per_token(self) -> int:
        return self.spatial * self.patch


LATENT = LatentGeometry()


@dataclass(frozen=True)
class VideoDefaults:
    frames: int = 49  # 4k+1: the Wan VAE compresses time 4x and keeps the first frame alone
    fps: int = 16
    height: int = 512
    width: int = 512


@dataclass(frozen=True)
class GenerationDefaults:
    """How a video is sampled unless asked otherwise (generation.GenerationSettings is the type
    that carries and checks them; the limits are in Limits)."""

    steps: int = 30  # flow-matching denoising steps
    guidance_scale: float = 3.0  # classifier-free guidance; 1 turns it off
    seed: int = 0


@dataclass(frozen=True)
class CameraDefaults:
    # The portrait's own camera: focal length from this vertical field of view (photos carry no
    # reliable intrinsics), distance to the head centre estimated later from the face scale.
    fov_deg: float = 30.0
    distance_cm: float = 60.0


@dataclass(frozen=True)
class Limits:
    min_frames: int = 1
    max_frames: int = 121  # ray maps alone are F*6*H*W floats: 121 x 1024^2 is 3 GB
    min_side: int = 16
    max_side: int = 1024
    size_multiple: int = LATENT.pixels_per_token  # Wan VAE (8x) times the 2x2 patch
    min_fps: float = 1.0
    max_fps: float = 60.0
    max_trajectory_bytes: int = 64 * 1024
    max_keyframes: int = 64
    min_steps: int = 1
    max_steps: int = 200
    min_guidance_scale: float = 1.0  # below 1 would push away from the condition
    max_guidance_scale: float = 20.0
    # What torch.Generator.manual_seed accepts: a signed or an unsigned 64-bit integer.
    min_seed: int = -(2**63)
    max_seed: int = 2**64 - 1
    # Uploaded images: formats by content (never by extension), decoded size bounded.
    # (JPEG includes phones' multi-picture MPO files; HEIC needs a decoder we do not ship.)
    image_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "AVIF")
    max_image_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 40_000_000  # bigger images are refused, not decoded
    max_image_side_tracked: int = 2048  # larger photos are downscaled before tracking
    # Uploaded videos: probed before decoding, decoded with hard bounds.
    max_video_bytes: int = 200 * 1024 * 1024
    max_video_seconds: float = 60.0
    max_video_frames: int = 1800
    max_video_input_side: int = 8192
    max_video_side_decoded: int = 1280  # frames are downscaled on read to at most this side


@dataclass(frozen=True)
class FaceLandmarkerModel:
    """MediaPipe's official Face Landmarker bundle (float16, version 1), as README says."""

    url: str = (
        "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
        "face_landmarker/float16/1/face_landmarker.task"
    )
    sha256: str = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
    size: int = 3_758_596


VIDEO = VideoDefaults()
GENERATION = GenerationDefaults()
CAMERA = CameraDefaults()
LIMITS = Limits()
FACE_LANDMARKER = FaceLandmarkerModel()


def check_frame_count(frames: int, *, name: str = "frames") -> int:
    """A model-compatible frame count: 4k+1 within the limits."""
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise InputError(f"{name}: expected an integer, got {frames!r}")
    if not LIMITS.min_frames <= frames <= LIMITS.max_frames:
        raise InputError(f"{name}: {frames} is outside [{LIMITS.min_frames}, {LIMITS.max_frames}]")
    if not LATENT.fits(frames):
        lower = LATENT.trimmed(frames)
        raise InputError(
            f"{name}: {frames} is not of the form 4k+1 (the video VAE needs it); "
            f"try {lower} or {lower + LATENT.frames_per_latent}"
        )
    return frames


def check_size(height: int, width: int, *, name: str = "size") -> tuple[int, int]:
    """A model-compatible frame size: multiples of 16 within the limits."""
    for side in (height, width):
        if isinstance(side, bool) or not isinstance(side, int):
            raise InputError(f"{name}: expected integer sides, got {side!r}")
        if not LIMITS.min_side <= side <= LIMITS.max_side:
            raise InputError(
                f"{name}: {side} is outside [{LIMITS.min_side}, {LIMITS.max_side}] pixels"
            )
        if side % LIMITS.size_multiple:
            raise InputError(f"{name}: {side} is not a multiple of {LIMITS.size_multiple}")
    return height, width


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '768x512' (width x height) -> (512, 768). Returns (height, width)."""
    parts = text.lower().split("x")
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"size: {text!r} is not S or WxH in pixels, e.g. 512 or 768x512") from None
    if len(numbers) == 1:
        height = width = numbers[0]
    elif len(numbers) == 2:
        width, height = numbers
    else:
        raise InputError(f"size: {text!r} is not S or WxH in pixels, e.g. 512 or 768x512")
    return check_size(height, width)


def check_fps(fps: float, *, name: str = "fps") -> float:
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps):
        raise InputError(f"{name}: expected a finite number, got {fps!r}")
    if not LIMITS.min_fps <= fps <= LIMITS.max_fps:
        raise InputError(f"{name}: {fps} is outside [{LIMITS.min_fps}, {LIMITS.max_fps}]")
    return float(fps)
