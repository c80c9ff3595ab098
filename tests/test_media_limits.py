"""The documented input limits (README "Inputs": images JPEG/PNG/WebP/AVIF, 30 MB, 40 MP; videos
60 s, 1800 frames, sides up to 8192) checked with files made here, at and just past each limit.

Every clip is made by imageio-ffmpeg's ffmpeg (an argument list, never a shell) from its
``testsrc2`` source with a known frame rate and duration, so the expected frame counts and
durations are known by construction, not read back from the code under test."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image, features

from factorportrait.config import LIMITS
from factorportrait.errors import InputError
from factorportrait.io.media import probe_frame_times, read_image, read_video

X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast"]


def _clip(path: Path, *, size: str, rate: int, frames: int, container: list[str] = ()) -> Path:
    """``frames`` frames of ``size`` at ``rate`` fps (so frames / rate seconds), H.264."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi",
               "-i", f"testsrc2=size={size}:rate={rate}", "-frames:v", str(frames),
               *X264, *container]  # fmt: skip
    if container:  # written to a pipe: the muxer cannot seek back to write a duration
        with open(path, "wb") as handle:
            subprocess.run([*command, "-"], stdout=handle, check=True, timeout=120)
    else:
        subprocess.run([*command, str(path)], check=True, timeout=120)
    return path


def test_the_limits_are_the_documented_ones():
    """README, the UI text and the error messages all quote these numbers."""
    assert LIMITS.max_image_bytes == 30 * 2**20 and LIMITS.max_image_pixels == 40_000_000
    assert set(LIMITS.image_formats) == {"JPEG", "PNG", "WEBP", "AVIF"}
    assert LIMITS.max_video_seconds == 60 and LIMITS.max_video_frames == 1800
    assert LIMITS.max_video_input_side == 8192


# ----------------------------------------------------------------------------- video duration
def test_a_61_s_clip_is_refused_from_its_header_and_a_60_s_one_is_read(tmp_path):
    long = _clip(tmp_path / "long.mp4", size="16x16", rate=1, frames=61)
    with pytest.raises(InputError, match=r"^video long\.mp4: 61\.0 s is over the 60 s limit$"):
        read_video(long)
    with pytest.raises(InputError, match="over the 60 s limit"):
        probe_frame_times(long)
    video = read_video(_clip(tmp_path / "just.mp4", size="16x16", rate=1, frames=60))
    assert len(video.frames) == 60 and video.duration == pytest.approx(60.0)
    np.testing.assert_allclose(video.times, np.arange(60.0), atol=1e-6)


def test_a_61_s_clip_without_a_declared_duration_is_refused_while_decoding(tmp_path):
    """Matroska written to a pipe carries no duration: only the frames' times tell. 61 frames
    at 1 fps start at 0..60 s and so cover 61 s; 60 frames cover exactly 60 s."""
    import av

    mkv = ["-f", "matroska"]
    long = _clip(tmp_path / "long.mkv", size="16x16", rate=1, frames=61, container=mkv)
    with av.open(str(long)) as container:  # the header really says nothing about duration
        assert container.duration is None and container.streams.video[0].duration is None
    with pytest.raises(InputError, match=r"^video long\.mkv: longer than 60 s$"):
        read_video(long)
    just = read_video(_clip(tmp_path / "just.mkv", size="16x16", rate=1, frames=60, container=mkv))
    assert len(just.frames) == 60 and just.duration == pytest.approx(60.0)


# ------------------------------------------------------------------------------- frame count
def test_1801_frames_are_refused_from_the_header_and_1800_are_read(tmp_path):
    """60 fps for 30 s is 1800 frames, one more is past the limit (the duration is not). The
    mp4 index counts the frames, so even a read of the first second refuses the clip."""
    over = _clip(tmp_path / "over.mp4", size="16x16", rate=60, frames=1801)
    message = r"^video over\.mp4: more than 1800 frames \(1801 in its header\)$"
    with pytest.raises(InputError, match=message):
        read_video(over, until_s=1.0)
    with pytest.raises(InputError, match=message):
        probe_frame_times(over)
    limit = _clip(tmp_path / "limit.mp4", size="16x16", rate=60, frames=1800)
    video = read_video(limit)
    assert video.frames.shape == (1800, 16, 16, 3) and video.frame_count == 1800
    assert video.duration == pytest.approx(30.0)
    assert len(probe_frame_times(limit)) == 1800


def test_1801_frames_without_a_count_in_the_header_are_refused_while_decoding(tmp_path):
    """Matroska written to a pipe has no frame count: the 1801st decoded frame is refused."""
    import av

    mkv = ["-f", "matroska"]
    over = _clip(tmp_path / "over.mkv", size="16x16", rate=60, frames=1801, container=mkv)
    with av.open(str(over)) as container:
        assert not container.streams.video[0].frames
    for reader in (read_video, probe_frame_times):
        with pytest.raises(InputError, match=r"^video over\.mkv: more than 1800 frames$"):
            reader(over)
    limit = _clip(tmp_path / "limit.mkv", size="16x16", rate=60, frames=1800, container=mkv)
    assert read_video(limit).frame_count == len(probe_frame_times(limit)) == 1800


def test_frames_without_timestamps_count_against_the_frame_limit(tmp_path):
    """A raw H.264 stream has no timestamps at all: its frames must still be counted, or a
    small file could make the reader decode frames without end."""
    raw = ["-f", "h264"]
    over = _clip(tmp_path / "over.h264", size="16x16", rate=60, frames=1801, container=raw)
    with pytest.raises(InputError, match=r"^video over\.h264: more than 1800 frames$"):
        read_video(over)
    limit = _clip(tmp_path / "limit.h264", size="16x16", rate=60, frames=1800, container=raw)
    with pytest.raises(InputError, match="no frames could be decoded"):  # no times: unusable
        read_video(limit)


# -------------------------------------------------------------------------------- frame side
@pytest.mark.parametrize(("size", "stored"), [("8194x16", "8194x16"), ("16x8194", "16x8194")])
def test_a_side_over_8192_pixels_is_refused_before_decoding(tmp_path, size, stored):
    path = _clip(tmp_path / "wide.mp4", size=size, rate=10, frames=2)
    message = rf"^video wide\.mp4: {stored} is over the 8192-pixel side limit$"
    with pytest.raises(InputError, match=message):
        read_video(path)
    with pytest.raises(InputError, match=message):
        probe_frame_times(path)


def test_a_side_of_8192_pixels_is_read_and_downscaled(tmp_path):
    """8192x16 scaled to a 1280 side: 16 * 1280 / 8192 = 2.5, rounded to an even 2."""
    video = read_video(_clip(tmp_path / "wide.mp4", size="8192x16", rate=10, frames=2))
    assert video.source_size == (8192, 16)
    assert video.frames.shape == (2, 2, LIMITS.max_video_side_decoded, 3)


# ------------------------------------------------------------------------------ image bytes
def _photo_padded_to(source: Path, path: Path, size: int) -> Path:
    """The JPEG with zero bytes after its end-of-image marker (decoders stop there), so the
    file has exactly ``size`` bytes and still shows the same picture."""
    data = source.read_bytes()
    assert data.endswith(b"\xff\xd9")
    path.write_bytes(data + b"\x00" * (size - len(data)))
    assert path.stat().st_size == size
    return path


def test_an_image_of_exactly_30_mb_is_read_and_one_byte_more_is_refused(pyfeat, tmp_path):
    source = pyfeat / "single_face.jpg"
    at_limit = _photo_padded_to(source, tmp_path / "at.jpg", LIMITS.max_image_bytes)
    assert np.array_equal(read_image(at_limit), read_image(source))
    over = _photo_padded_to(source, tmp_path / "over.jpg", LIMITS.max_image_bytes + 1)
    with pytest.raises(InputError, match=r"^image over\.jpg: 30\.1 MB is over the 30 MB limit$"):
        read_image(over)


def test_an_uncompressed_png_over_30_mb_is_refused_before_decoding(tmp_path):
    """3300 x 3300 RGB stored without compression: 32,670,000 bytes of pixels plus a filter
    byte per row and block headers, so 31.16 MiB, shown rounded up as 31.2 MB. It is 10.9 MP,
    well under the pixel cap, so only the byte limit can refuse it."""
    Image.new("RGB", (3300, 3300), (10, 20, 30)).save(tmp_path / "big.png", compress_level=0)
    assert 31.1 * 2**20 < (tmp_path / "big.png").stat().st_size <= 31.2 * 2**20
    with pytest.raises(InputError, match=r"^image big\.png: 31\.2 MB is over the 30 MB limit$"):
        read_image(tmp_path / "big.png")


# ----------------------------------------------------------------------------- image pixels
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header (valid CRC) claims width x height, with a 64-byte body."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    body = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", len(body)) + b"IDAT" + body
        + struct.pack(">I", zlib.crc32(b"IDAT" + body))
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )  # fmt: skip


def test_the_40_mp_cap_is_applied_from_the_header(tmp_path):
    """6400 x 6400 = 40.96 MP is refused by the cap; 6000 x 6000 = 36 MP passes the cap and
    only then fails, on its missing pixels (no 40 MP image is ever decoded here)."""
    (tmp_path / "over.png").write_bytes(_png_header_only(6400, 6400))
    with pytest.raises(InputError, match=r"6400x6400 \(41\.0 MP\) is over the 40 MP limit"):
        read_image(tmp_path / "over.png")
    (tmp_path / "under.png").write_bytes(_png_header_only(6000, 6000))
    with pytest.raises(InputError, match=r"^image under\.png: cannot decode it"):
        read_image(tmp_path / "under.png")


# ------------------------------------------------------------------------------------- AVIF
def test_avif_is_read_by_its_content(tmp_path):
    """An AVIF made by Pillow (named .png: the format comes from the bytes) reads back as the
    picture it encodes: red left half, blue right half."""
    assert features.check("avif"), "Pillow was built without AVIF: the README promises it"
    picture = np.zeros((64, 96, 3), np.uint8)
    picture[:, :48] = (255, 0, 0)
    picture[:, 48:] = (0, 0, 255)
    Image.fromarray(picture).save(tmp_path / "photo.png", format="AVIF", quality=90)
    assert (tmp_path / "photo.png").read_bytes()[4:12] == b"ftypavif"
    image = read_image(tmp_path / "photo.png")
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    # Away from the edge (chroma subsampling blurs it), within a few levels of the source.
    assert np.abs(image[:, :40].astype(int) - (255, 0, 0)).mean() < 6
    assert np.abs(image[:, 56:].astype(int) - (0, 0, 255)).mean() < 6
