"""Video writing through imageio-ffmpeg (its bundled ffmpeg, run with argument lists, never a
shell). Output is H.264 yuv420p with +faststart so every browser plays it (ARCHITECTURE.md: Conventions)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from ..errors import InputError


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "veryfast",
) -> Path:
    """Encode RGB uint8 frames (F,H,W,3), H and W even, to an mp4 at ``path``; ``preset`` is
    x264's speed/size trade-off."""
    path = Path(path)
    writer = None
    count = 0
    try:
        for frame in frames:
            frame = np.asarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise InputError(
                    f"video frames: expected uint8 (H, W, 3), got {frame.dtype} {frame.shape}"
                )
            height, width = frame.shape[:2]
            if writer is None:
                if height % 2 or width % 2:
                    raise InputError(
                        f"video frames: H.264 yuv420p needs even sides, got {width}x{height}"
                    )
                size = (width, height)
                writer = imageio_ffmpeg.write_frames(
                    str(path),
                    size,
                    fps=fps,
                    codec="libx264",
                    pix_fmt_in="rgb24",
                    pix_fmt_out="yuv420p",
                    quality=None,
                    macro_block_size=2,
                    ffmpeg_log_level="error",
                    output_params=[
                        "-crf",
                        str(crf),
                        "-preset",
                        preset,
                        "-movflags",
                        "+faststart",
                    ],
                )
                writer.send(None)  # start ffmpeg
            elif (width, height) != size:
                raise InputError(
                    f"video frames: frame {count} is {width}x{height}, not {size[0]}x{size[1]}"
                )
            writer.send(np.ascontiguousarray(frame))
            count += 1
    finally:
        if writer is not None:
            writer.close()
    if count == 0:
        raise InputError("video frames: nothing to write")
    return path


def mux_audio(video: str | Path, audio_source: str | Path, out: str | Path) -> Path:
    """``video``'s picture with ``audio_source``'s first audio track (AAC), cut to the shorter
    of the two. ffmpeg gets an argument list: names with spaces or quotes are safe."""
    out = Path(out)
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-y",
        "-i",
        str(video),
        "-i",
        str(audio_source),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0?",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        "-movflags",
        "+faststart",
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise InputError(f"adding the driving video's sound failed: {result.stderr.strip()[:200]}")
    return out
