"""mp4 output: H.264 yuv420p with +faststart, frames and size as given."""

import imageio_ffmpeg
import numpy as np
import pytest

from factorportrait.errors import InputError
from factorportrait.io import staged_output_dir, write_video


def _frames(count=6, height=32, width=48):
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, :, : (i + 1) * width // count] = (40 * i, 200, 255 - 40 * i)
    return frames


def test_written_video_reads_back(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "a b ü;$(x).mp4", frames, fps=16)  # odd names never reach a shell
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    decoded = [np.frombuffer(f, np.uint8).reshape(32, 48, 3) for f in reader]
    assert meta["size"] == (48, 32) and meta["fps"] == pytest.approx(16)
    assert meta["codec"].startswith("h264") and meta["pix_fmt"].startswith("yuv420p")
    assert len(decoded) == len(frames)
    # Lossy, but the picture is the one we wrote (flat colour regions survive within a few levels).
    assert np.abs(decoded[3][:, 2:20].astype(int) - frames[3][:, 2:20]).mean() < 6


def test_faststart_puts_the_index_first(tmp_path):
    data = write_video(tmp_path / "v.mp4", _frames(), fps=8).read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 31, 48, 3), np.uint8), "even sides"),
        (np.zeros((2, 32, 48, 3), np.float32), "expected uint8"),
        (np.zeros((0, 32, 48, 3), np.uint8), "nothing to write"),
        ([np.zeros((32, 48, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)], "frame 1 is 64x32"),
    ],
)
def test_bad_frames_are_refused(tmp_path, frames, message):
    with pytest.raises(InputError, match=message):
        write_video(tmp_path / "bad.mp4", frames, fps=8)


def test_staged_output_is_all_or_nothing(tmp_path):
    out = tmp_path / "result"
    with pytest.raises(RuntimeError), staged_output_dir(out) as stage:
        (stage / "one.txt").write_text("1")
        raise RuntimeError("failed half-way")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder left behind
    with staged_output_dir(out) as stage:
        (stage / "one.txt").write_text("1")
    assert (out / "one.txt").read_text() == "1" and list(tmp_path.iterdir()) == [out]
