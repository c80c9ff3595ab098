"""Validated reading of user images and videos (README: Limits).

Images: the format is taken from the content (an allow-list), the pixel count is checked before
decoding, Pillow's decompression-bomb warning is an error, EXIF orientation is applied and every
mode (grayscale, palette, alpha, CMYK, 16-bit) becomes 8-bit RGB.

Videos: PyAV (FFmpeg's libraries) probes the container before decoding and gives each frame its
real presentation time, so variable or wrongly declared frame rates are handled by timestamps
rather than by trusting the header; rotation metadata is honoured; frames are downscaled on read.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..config import LIMITS
from ..errors import InputError


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> RGB uint8 (H, W, 3), upright."""
    path = Path(path)
    name = path.name
    _check_file(path, "image", LIMITS.max_image_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=list(LIMITS.image_formats)) as image:
                width, height = image.size
                if width * height > LIMITS.max_image_pixels:
                    raise InputError(
                        f"image {name}: {width}x{height} ({width * height / 1e6:.1f} MP) is "
                        f"over the {LIMITS.max_image_pixels / 1e6:g} MP limit"
                    )
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except InputError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(f"image {name}: too many pixels (decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise InputError(
            f"image {name}: not a supported image (allowed: {', '.join(LIMITS.image_formats)})"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"image {name}: cannot decode it ({exc})") from None


def _check_file(path: Path, kind: str, max_bytes: int) -> None:
    """Exists, is not empty, is not over the size limit: before any decoder sees it."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"{kind} {path.name}: cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(f"{kind} {path.name}: the file is empty")
    if size > max_bytes:
        # Rounded up, so a file just over the limit never reads as "30 MB is over 30 MB".
        raise InputError(
            f"{kind} {path.name}: {math.ceil(size / 2**20 * 10) / 10:.1f} MB is over the "
            f"{max_bytes / 2**20:.0f} MB limit"
        )


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping.
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.repeat(
            (values / top * 255.0).round().clip(0, 255).astype(np.uint8)[..., None], 3, -1
        )
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels over white, as a browser shows them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


@dataclass
class VideoFrames:
    """Decoded frames with their presentation times (seconds, from the first frame)."""

    frames: np.ndarray  # (N, H, W, 3) uint8, upright, downscaled to the read limit
    times: np.ndarray  # (N,) float64 s from the clip's first frame, strictly increasing
    declared_fps: float | None  # what the container claims (may be wrong)
    source_size: tuple[int, int]  # (width, height) as stored, before rotation/downscale
    rotation: int  # degrees applied to make the frames upright
    has_audio: bool
    frame_count: int | None = None  # frames decoded, kept or not (None: not counted)
    frame_indices: np.ndarray | None = None  # (N,) which decoded frame (display order) each is

    @property
    def duration(self) -> float:
        """Time covered by the frames, the last one held for a typical frame interval."""
        if len(self.times) < 2:
            return 0.0
        return float(self.times[-1] + np.median(np.diff(self.times)))


def read_video(
    path: str | Path,
    *,
    max_side: int = LIMITS.max_video_side_decoded,
    until_s: float | None = None,
    ranges_s: Sequence[tuple[float, float]] | None = None,
    keep_last: bool = False,
) -> VideoFrames:
    """A video file -> bounded, upright RGB frames with real timestamps.

    Which frames are kept (times from the first frame): all; or with ``until_s`` those up to it,
    decoding stopping there (callers that need only the start of a long clip save most of the
    decoding time); or with ``ranges_s`` those inside any of the (start, end) ranges. With
    ``keep_last`` the clip is decoded to its end and its last frame kept too (training wants a
    few windows of a clip and its end, not the memory for all of it). ``frame_count`` counts
    every frame decoded, ``frame_indices`` says which of them the kept ones are."""
    import av  # deferred: only the video paths pay for it

    path = Path(path)
    name = path.name
    _check_file(path, "video", LIMITS.max_video_bytes)
    if until_s is not None:
        ranges_s = [(0.0, until_s)]
    stop_after = None if keep_last or ranges_s is None else max(end for _, end in ranges_s)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"video {name}: not a readable video ({_reason(exc)})") from None
    with container:
        stream, width, height = _checked_video_stream(container, name)
        declared_fps = float(stream.average_rate) if stream.average_rate else None
        stream.thread_type = "AUTO"
        scale = min(1.0, max_side / max(width, height))
        out_w, out_h = (_even(width * scale), _even(height * scale))
        frames, times, every_time, rotation = [], [], [], 0
        start, last = None, None  # the first frame's time; the latest frame not kept

        def to_rgb(frame) -> np.ndarray:
            return _upright(frame.to_ndarray(width=out_w, height=out_h, format="rgb24"), rotation)

        decoded = 0  # every frame, with a timestamp or not: each costs a decode
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > LIMITS.max_video_frames:
                    raise InputError(f"video {name}: more than {LIMITS.max_video_frames} frames")
                if frame.time is None:
                    continue
                start = frame.time if start is None else start
                elapsed = frame.time - start
                # A frame that starts at the limit or later makes the clip longer than it.
                if elapsed >= LIMITS.max_video_seconds:
                    raise InputError(f"video {name}: longer than {LIMITS.max_video_seconds:.0f} s")
                if stop_after is not None and elapsed > stop_after:
                    break
                rotation = frame.rotation or 0
                every_time.append(float(frame.time))
                if ranges_s is None or any(a <= elapsed <= b for a, b in ranges_s):
                    frames.append(to_rgb(frame))
                    times.append(float(frame.time))
                elif keep_last and (last is None or frame.time > last.time):
                    last = frame
        except av.FFmpegError as exc:
            if not frames and last is None:
                raise InputError(f"video {name}: cannot decode it ({_reason(exc)})") from None
            # A decode error part-way (a damaged tail): keep what decoded. (A file cut short
            # just ends: its frames up to the cut are kept the same way.)
        if last is not None and (not times or last.time > max(times)):
            frames.append(to_rgb(last))
            times.append(float(last.time))
        has_audio = bool(container.streams.audio)
    if not frames:
        raise InputError(f"video {name}: no frames could be decoded")
    times_arr = np.asarray(times)
    order = np.argsort(times_arr, kind="stable")  # B-frames: decode order is not display order
    times_arr, keep = np.unique(times_arr[order], return_index=True)  # drop duplicate timestamps
    stack = np.stack([frames[i] for i in order[keep]])
    every_time = np.unique(every_time)
    return VideoFrames(
        stack,
        times_arr - every_time[0],  # from the clip's first frame (B-frames: the earliest)
        declared_fps,
        (width, height),
        rotation,
        has_audio,
        frame_count=len(every_time),
        frame_indices=np.searchsorted(every_time, times_arr),
    )


def probe_frame_times(path: str | Path) -> np.ndarray:
    """Every frame's time (s from the first, display order) from the container's packets,
    without decoding: cheap, so a caller can choose what to decode."""
    import av

    path = Path(path)
    _check_file(path, "video", LIMITS.max_video_bytes)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"video {path.name}: not a readable video ({_reason(exc)})") from None
    with container:
        stream, _, _ = _checked_video_stream(container, path.name)
        stamps = []
        try:
            for packet in container.demux(stream):
                if packet.pts is not None and packet.size:
                    stamps.append(float(packet.pts * stream.time_base))
                if len(stamps) > LIMITS.max_video_frames:
                    raise InputError(
                        f"video {path.name}: more than {LIMITS.max_video_frames} frames"
                    )
        except av.FFmpegError:
            pass  # a truncated tail: what was read
    if not stamps:
        raise InputError(f"video {path.name}: no frames in it")
    times = np.unique(stamps)
    return times - times[0]


def _checked_video_stream(container, name: str):
    """The first video stream of an open container, after the header checks: (stream, w, h)."""
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        raise InputError(f"video {name}: this is a still image, not a video")
    if not container.streams.video:
        raise InputError(f"video {name}: the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec FFmpeg has no decoder for (or a mangled id)
        raise InputError(f"video {name}: its video codec is unknown or not supported")
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise InputError(f"video {name}: no frame size in the header (not a video?)")
    if max(width, height) > LIMITS.max_video_input_side:
        raise InputError(
            f"video {name}: {width}x{height} is over the "
            f"{LIMITS.max_video_input_side}-pixel side limit"
        )
    if stream.frames and stream.frames > LIMITS.max_video_frames:  # counted by the container
        raise InputError(
            f"video {name}: more than {LIMITS.max_video_frames} frames "
            f"({stream.frames} in its header)"
        )
    declared = _duration_seconds(container, stream)
    if declared is not None and declared > LIMITS.max_video_seconds + 0.5:
        raise InputError(
            f"video {name}: {declared:.1f} s is over the {LIMITS.max_video_seconds:.0f} s limit"
        )
    return stream, width, height


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Undo the display matrix: PyAV reports the counterclockwise rotation to apply."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns)) if quarter_turns else rgb


def _duration_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120]
