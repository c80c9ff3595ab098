"""A corpus of broken media made here from real files (truncated, bit-flipped, garbage in front,
random bytes, lying headers, wrong formats). Each kind of breakage has a known outcome, checked
input by input:

- a truncated image cannot be decoded whole: it is refused, with a message naming the file and
  saying it cannot be decoded (Pillow's truncated-image fill would be a silent wrong picture);
- a truncated mp4 whose index (``moov``) sits at the end has no index left: refused;
- a truncated mp4 with its index first (``+faststart``) keeps what decodes: a strict subset of
  the clip's frames, each identical to the whole clip's frame at the same time;
- garbage in front and random bytes are not media: refused as unsupported / unreadable;
- headers that claim absurd sizes, wrong formats and empty files: each its own message;
- bit flips may or may not break the decode: refused with a one-line message naming the file,
  or decoded to frames within the limits (and at least some really change the picture).

The corpus itself is checked for being what it says (prefixes, same-length changes, ...), and
the real file reads the same before and after."""

import io
import re
import struct
import subprocess
import zlib

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from factorportrait.config import LIMITS
from factorportrait.errors import InputError
from factorportrait.io.media import read_image, read_video

MAX_SIDE = 320  # videos are decoded small: the checks do not need the full picture
COUNT = 12  # of each mutation, per base image
VIDEO_COUNT = 8  # per base video (decoding dominates the run time)


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image (valid CRC), with a tiny body."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    body = zlib.compress(b"\x00" * 64)
    idat = (
        struct.pack(">I", len(body))
        + b"IDAT"
        + body
        + struct.pack(">I", zlib.crc32(b"IDAT" + body))
    )
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _mutations(data: bytes, rng: np.random.Generator, count: int):
    """(kind, bytes) pairs, each checked here to be the breakage it is named for."""
    for fraction in np.linspace(0.02, 0.95, count):
        cut = data[: int(len(data) * fraction)]
        assert 0 < len(cut) < len(data) and data.startswith(cut)
        yield "truncated", cut
    for _ in range(count):
        flipped = bytearray(data)
        region = min(len(data), 4096 if rng.random() < 0.6 else len(data))
        for position in rng.integers(0, region, size=int(rng.integers(1, 64))):
            flipped[position] ^= int(rng.integers(1, 256))
        assert len(flipped) == len(data) and bytes(flipped) != data
        yield "bit-flipped", bytes(flipped)
    prefixed = rng.bytes(512) + data
    assert prefixed.endswith(data) and not prefixed.startswith(data[:16])
    yield "garbage prefix", prefixed
    yield "random bytes", rng.bytes(len(data) // 10 + 16)


def _outcome(reader, path, what):
    """The decoded image (H, W, 3) / video, or the refusal's message, which names the file
    (``what`` is "image" or "video"). Any other exception fails the test."""
    try:
        result = reader(path)
    except InputError as exc:
        message = str(exc)
        assert message.startswith(f"{what} {path.name}: "), message
        assert "\n" not in message and len(message) < 300
        return message
    return result


def _is_decoded_image(result) -> bool:
    if isinstance(result, str):
        return False
    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
    assert result.shape[0] * result.shape[1] <= LIMITS.max_image_pixels
    return True


def test_broken_images(pyfeat, tmp_path):
    rng = np.random.default_rng(7)
    photo = Image.open(pyfeat / "single_face.jpg")
    webp = io.BytesIO()
    photo.save(webp, "WEBP")
    bases = {
        "jpg": (pyfeat / "single_face.jpg").read_bytes(),
        "png": (pyfeat / "Image_with_alpha.png").read_bytes(),
        "webp": webp.getvalue(),
    }
    seen = {"truncated": 0, "bit-flipped": 0, "flips decoded differently": 0, "refused": 0}
    for suffix, data in bases.items():
        (tmp_path / f"image-whole.{suffix}").write_bytes(data)
        whole = read_image(tmp_path / f"image-whole.{suffix}")
        for number, (kind, mutated) in enumerate(_mutations(data, rng, COUNT)):
            path = tmp_path / f"image-{suffix}-{number}.{suffix}"
            path.write_bytes(mutated)
            result = _outcome(read_image, path, "image")
            seen[kind] = seen.get(kind, 0) + 1
            seen["refused"] += isinstance(result, str)
            if kind == "truncated":
                assert isinstance(result, str), f"{path.name}: a truncated image decoded"
                assert re.search(r": cannot decode it \(.+\)$|: not a supported image", result)
            elif kind in ("garbage prefix", "random bytes"):
                assert isinstance(result, str) and "not a supported image (allowed: " in result
            elif _is_decoded_image(result):
                if result.shape != whole.shape or not np.array_equal(result, whole):
                    seen["flips decoded differently"] += 1
        # Still healthy: the real file reads exactly as before.
        assert np.array_equal(read_image(tmp_path / f"image-whole.{suffix}"), whole)
    # The corpus is what it claims: every kind present, and it does break things.
    assert seen["truncated"] == seen["bit-flipped"] == 3 * COUNT
    assert seen["garbage prefix"] == seen["random bytes"] == 3
    assert seen["flips decoded differently"] >= 3 and seen["refused"] >= 3 * COUNT + 6

    extra = {
        "huge.png": (_png_with_size(100_000, 100_000), "too many pixels"),
        "wide.png": (_png_with_size(2**31 - 1, 1), "too many pixels"),
        "video-as.jpg": ((pyfeat / "single_face.mp4").read_bytes(), "not a supported image"),
        "empty.jpg": (b"", "the file is empty"),
    }
    for name, (data, expected) in extra.items():
        path = tmp_path / f"image-{name}"
        path.write_bytes(data)
        result = _outcome(read_image, path, "image")
        assert isinstance(result, str) and expected in result, (name, result)


def _faststart(source, out):
    """The same clip, packets untouched, with its index moved to the front."""
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(source),
         "-map", "0", "-c", "copy", "-movflags", "+faststart", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return out


def test_broken_videos(pyfeat, tmp_path):
    rng = np.random.default_rng(7)
    bases = {
        "mp4": (pyfeat / "single_face.mp4").read_bytes(),
        "mov": (pyfeat / "face_noface.mov").read_bytes(),
        "fs.mp4": _faststart(pyfeat / "single_face.mp4", tmp_path / "fs.mp4").read_bytes(),
    }
    assert bases["mp4"].index(b"moov") > bases["mp4"].index(b"mdat")  # index at the end
    assert bases["mov"].index(b"moov") > bases["mov"].index(b"mdat")
    assert bases["fs.mp4"].index(b"moov") < bases["fs.mp4"].index(b"mdat")  # index first

    def reader(path):
        return read_video(path, max_side=MAX_SIDE)

    seen = {"partial decodes": 0, "flips decoded differently": 0, "refused": 0}
    for suffix, data in bases.items():
        (tmp_path / f"video-whole.{suffix}").write_bytes(data)
        whole = reader(tmp_path / f"video-whole.{suffix}")
        cut_counts = []
        for number, (kind, mutated) in enumerate(_mutations(data, rng, VIDEO_COUNT)):
            path = tmp_path / f"video-{suffix.replace('.', '_')}-{number}.{suffix}"
            path.write_bytes(mutated)
            result = _outcome(reader, path, "video")
            seen["refused"] += isinstance(result, str)
            if kind == "truncated" and suffix != "fs.mp4":
                assert len(mutated) < data.index(b"moov")  # the index was cut off
                assert isinstance(result, str) and "not a readable video" in result, result
            elif kind == "truncated":
                if isinstance(result, str):  # only before the first whole frame
                    assert len(cut_counts) == 0 and "cannot decode it" in result, result
                    continue
                # What decodes of a cut clip is the clip's own frames, fewer of them.
                assert 0 < len(result.frames) < len(whole.frames)
                at = np.searchsorted(whole.times, result.times)
                np.testing.assert_allclose(whole.times[at], result.times, atol=1e-6)
                assert np.array_equal(result.frames, whole.frames[at]), path.name
                cut_counts.append(len(result.frames))
                seen["partial decodes"] += 1
            elif kind in ("garbage prefix", "random bytes"):
                assert isinstance(result, str) and "not a readable video" in result, result
            elif not isinstance(result, str):  # bit-flipped and decoded
                frames = result.frames
                assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
                assert 0 < len(frames) <= LIMITS.max_video_frames
                assert max(frames.shape[1:3]) <= MAX_SIDE
                assert (np.diff(result.times) > 0).all()
                if frames.shape != whole.frames.shape or not np.array_equal(frames, whole.frames):
                    seen["flips decoded differently"] += 1
        # Longer cuts never decode fewer frames.
        assert cut_counts == sorted(cut_counts)
        # Still healthy: the real file reads exactly as before.
        again = reader(tmp_path / f"video-whole.{suffix}")
        assert np.array_equal(again.frames, whole.frames)
    assert seen["partial decodes"] >= VIDEO_COUNT - 2  # the kept-what-decodes path really ran
    assert seen["flips decoded differently"] >= 3
    assert seen["refused"] >= 2 * VIDEO_COUNT + 6

    extra = {
        "image-as.mp4": ((pyfeat / "single_face.jpg").read_bytes(), "this is a still image"),
        "empty.mp4": (b"", "the file is empty"),
        "text.mp4": (b"ftypisom" * 100, "not a readable video"),
    }
    for name, (data, expected) in extra.items():
        path = tmp_path / f"video-{name}"
        path.write_bytes(data)
        result = _outcome(reader, path, "video")
        assert isinstance(result, str) and expected in result, (name, result)


@pytest.mark.parametrize("size", [1, 7, 100])
def test_tiny_files_are_refused(tmp_path, size):
    """A few bytes of a real header: never an IndexError or struct.error from a parser."""
    for name, head in (("a.jpg", b"\xff\xd8\xff\xe0"), ("a.png", b"\x89PNG\r\n\x1a\n")):
        (tmp_path / name).write_bytes((head * 100)[:size])
        assert isinstance(_outcome(read_image, tmp_path / name, "image"), str)
    (tmp_path / "a.mp4").write_bytes((b"\x00\x00\x00\x18ftypmp42" * 20)[:size])
    assert isinstance(_outcome(read_video, tmp_path / "a.mp4", "video"), str)


def test_an_unknown_video_codec_is_refused(pyfeat, tmp_path):
    """The sample entry's codec tag renamed (as one bit-flip did): FFmpeg finds the stream but
    has no decoder for it, and PyAV gives it no codec context. A clear refusal, not an
    AttributeError."""
    from factorportrait.io.media import probe_frame_times

    data = (pyfeat / "single_face.mp4").read_bytes()
    assert b"avc1" in data
    (tmp_path / "odd.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))
    for reader in (read_video, probe_frame_times):
        assert _outcome(reader, tmp_path / "odd.mp4", "video") == (
            "video odd.mp4: its video codec is unknown or not supported"
        )
