"""A corpus of broken media made here from real files (truncated, bit-flipped, lying headers,
wrong formats): every one gives a clear InputError or a valid decode, never another exception,
and the process stays healthy."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from factorportrait.errors import InputError
from factorportrait.io.media import read_image, read_video


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
    for fraction in np.linspace(0.02, 0.95, count):
        yield "truncated", data[: int(len(data) * fraction)]
    for _ in range(count):
        flipped = bytearray(data)
        region = min(len(data), 4096 if rng.random() < 0.6 else len(data))
        for position in rng.integers(0, region, size=int(rng.integers(1, 64))):
            flipped[position] ^= int(rng.integers(1, 256))
        yield "bit-flipped", bytes(flipped)
    yield "garbage prefix", rng.bytes(512) + data
    yield "random bytes", rng.bytes(len(data) // 10 + 16)


def _check(reader, path, outcomes):
    try:
        result = reader(path)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        outcomes["refused"] += 1
    else:
        frames = result if isinstance(result, np.ndarray) else result.frames
        assert frames.dtype == np.uint8 and frames.shape[-1] == 3
        outcomes["decoded"] += 1


@pytest.mark.parametrize("kind", ["image", "video"])
def test_broken_media_corpus(kind, pyfeat, tmp_path):
    rng = np.random.default_rng(7)
    outcomes = {"refused": 0, "decoded": 0}
    if kind == "image":
        photo = Image.open(pyfeat / "single_face.jpg")
        webp = io.BytesIO()
        photo.save(webp, "WEBP")
        bases = {
            "jpg": (pyfeat / "single_face.jpg").read_bytes(),
            "png": (pyfeat / "Image_with_alpha.png").read_bytes(),
            "webp": webp.getvalue(),
        }
        extra = {
            "huge.png": _png_with_size(100_000, 100_000),
            "wide.png": _png_with_size(2**31 - 1, 1),
            "video-as.jpg": (pyfeat / "single_face.mp4").read_bytes(),
            "empty.jpg": b"",
        }
        reader = read_image
    else:
        bases = {
            "mp4": (pyfeat / "single_face.mp4").read_bytes(),
            "mov": (pyfeat / "face_noface.mov").read_bytes(),
        }
        extra = {
            "image-as.mp4": (pyfeat / "single_face.jpg").read_bytes(),
            "empty.mp4": b"",
            "text.mp4": b"ftypisom" * 100,
        }
        reader = read_video
    tried = 0
    for suffix, data in bases.items():
        for number, (_, mutated) in enumerate(_mutations(data, rng, 12)):
            path = tmp_path / f"case-{suffix}-{number}.{suffix}"
            path.write_bytes(mutated)
            _check(reader, path, outcomes)
            tried += 1
    for name, data in extra.items():
        path = tmp_path / name
        path.write_bytes(data)
        _check(reader, path, outcomes)
        tried += 1
    print(f"\n{kind} fuzz corpus: {tried} inputs tried, {outcomes}")
    assert tried == sum(outcomes.values()) >= 50 and outcomes["refused"] >= 10
    # Still healthy: the real file reads as before.
    real = next(iter(bases))
    path = tmp_path / f"real.{real}"
    path.write_bytes(bases[real])
    _check(reader, path, outcomes)
