"""Validated image and video reading with real and crafted files."""

import dataclasses
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from factorportrait.errors import InputError
from factorportrait.io import media, write_video
from factorportrait.io.media import read_image, read_video


def test_real_photo(pyfeat):
    image = read_image(pyfeat / "single_face.jpg")
    assert image.shape == (562, 572, 3) and image.dtype == np.uint8


def test_grayscale_alpha_palette_cmyk_16bit(pyfeat, tmp_path):
    photo = Image.open(pyfeat / "single_face.jpg")
    photo.convert("L").save(tmp_path / "gray.png")
    gray = read_image(tmp_path / "gray.png")
    assert gray.shape == (562, 572, 3) and (gray[..., 0] == gray[..., 2]).all()

    rgba = read_image(pyfeat / "Image_with_alpha.png")
    assert rgba.shape == (1036, 1524, 3)

    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    transparent.save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png") == 255).all()  # shown over white

    photo.convert("P").save(tmp_path / "palette.png")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("palette.png", "cmyk.jpg"):
        assert read_image(tmp_path / name).shape == (562, 572, 3)

    Image.fromarray(np.full((4, 6), 65535, np.uint16)).save(tmp_path / "deep.png")
    deep = read_image(tmp_path / "deep.png")
    assert deep.shape == (4, 6, 3) and (deep == 255).all()  # scaled, not clipped to garbage


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise for display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    upright = read_image(tmp_path / "rotated.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[2, 10, 0] > 200  # the red strip is now on top


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"just some text, not a picture", "not a supported image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode it|not a supported image"),
    ],
)
def test_bad_images_are_refused(tmp_path, content, message):
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_image(path)


def test_bmp_is_not_on_the_allow_list(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "picture.bmp")
    with pytest.raises(InputError, match="allowed: JPEG, PNG"):
        read_image(tmp_path / "picture.bmp")


def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(media, "LIMITS", dataclasses.replace(media.LIMITS, max_image_pixels=50_000))
    with pytest.raises(InputError, match=r"300x200 \(0\.1 MP\) is over the 0\.05 MP limit"):
        read_image(tmp_path / "big.png")


def test_real_clip_with_timestamps(pyfeat):
    video = read_video(pyfeat / "single_face.mp4")
    assert video.frames.shape == (72, 360, 640, 3)
    np.testing.assert_allclose(np.diff(video.times), 1 / 30, atol=1e-6)
    assert video.times[0] == 0 and video.has_audio and video.duration == pytest.approx(2.4)


def test_variable_frame_rate_clip_keeps_real_times(pyfeat):
    video = read_video(pyfeat / "noface_face.mov")
    steps = np.diff(video.times)
    assert (steps > 0).all()
    assert steps.max() > 2 * steps.min()  # really variable: the header's rate would be wrong
    assert video.duration == pytest.approx(6.39, abs=0.05)


def test_downscaled_on_read(pyfeat):
    video = read_video(pyfeat / "no_face.mp4", max_side=320)
    assert video.frames.shape[1:] == (180, 320, 3)


def test_rotation_metadata_is_honoured(tmp_path):
    frames = np.zeros((3, 32, 64, 3), np.uint8)
    frames[:, :, :16] = (255, 0, 0)  # red on the left of a landscape clip
    plain = write_video(tmp_path / "plain.mp4", frames, fps=10)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-display_rotation", "90",
         "-i", str(plain), "-c", "copy", str(rotated)], check=True)  # fmt: skip
    video = read_video(rotated)
    assert video.frames.shape == (3, 64, 32, 3) and video.rotation != 0
    # ffmpeg's own auto-rotation is the reference.
    reader = imageio_ffmpeg.read_frames(str(rotated))
    meta = next(reader)
    expected = np.frombuffer(next(reader), np.uint8).reshape(meta["size"][1], meta["size"][0], 3)
    assert np.abs(video.frames[0].astype(int) - expected).mean() < 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"definitely not a video" * 10, "not a readable video"),
    ],
)
def test_bad_videos_are_refused(tmp_path, content, message):
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_video(path)


def test_an_image_is_not_a_video(pyfeat):
    with pytest.raises(InputError, match="video single_face.jpg"):
        read_video(pyfeat / "single_face.jpg")


def test_truncated_video_keeps_what_decodes(pyfeat, tmp_path):
    """A clip cut in half (its index first, as +faststart writes it, so the index survives the
    cut) gives the frames before the cut, each the same as in the whole clip."""
    whole = tmp_path / "whole.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(pyfeat / "single_face.mp4"),
         "-c", "copy", "-movflags", "+faststart", str(whole)], check=True)  # fmt: skip
    data = whole.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    full, video = read_video(whole), read_video(cut)
    assert 10 < len(video.frames) < len(full.frames) == 72
    at = np.searchsorted(full.times, video.times)
    np.testing.assert_allclose(full.times[at], video.times, atol=1e-6)
    assert np.array_equal(video.frames, full.frames[at])


def test_keep_last_keeps_the_start_and_the_last_frame(tmp_path):
    """Training reads a clip's start and its last frame: the same pixels a full read gives,
    without holding the rest; every frame is still counted."""
    frames = np.stack([np.full((32, 48, 3), 8 * i, np.uint8) for i in range(30)])
    path = write_video(tmp_path / "ramp.mp4", frames, 10)
    full = read_video(path)
    partial = read_video(path, until_s=0.45, keep_last=True)
    assert full.frame_count == partial.frame_count == 30
    assert len(partial.frames) == 6  # 0.0 ... 0.4 s, then the last
    assert np.array_equal(partial.frames[:5], full.frames[:5])
    assert np.array_equal(partial.frames[-1], full.frames[-1])
    assert partial.times[-1] == pytest.approx(full.times[-1])
