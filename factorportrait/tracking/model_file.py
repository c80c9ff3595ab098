"""Where the MediaPipe Face Landmarker bundle comes from (README: Command line).

Order: an explicit path, then $FACTORPORTRAIT_FACE_LANDMARKER, then the copy shipped in the
repository (assets/face_landmarker.task, Apache-2.0: assets/README.md), then the user cache
(~/.cache/factorportrait/face_landmarker.task, honouring $XDG_CACHE_HOME), then a download from
MediaPipe's official URL into that cache. So a clone works offline; the cache and the download
only serve a tree without the shipped file. Whatever is found is checked against the official
sha256 first: a mismatch is an error, never a silent fallback to the next place.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

from ..config import FACE_LANDMARKER
from ..errors import InputError
from ..io import sha256_file

ENV_VAR = "FACTORPORTRAIT_FACE_LANDMARKER"
FILE_NAME = "face_landmarker.task"
SHIPPED = Path(__file__).resolve().parents[2] / "assets" / FILE_NAME


class ModelFileError(InputError):
    """The landmarker bundle is missing, unreachable or not the official file."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "factorportrait"


def resolve_face_landmarker(path: str | Path | None = None, *, download: bool = True) -> Path:
    """The verified path of face_landmarker.task."""
    if path is not None:
        return _verified(Path(path), "the given path")
    if os.environ.get(ENV_VAR):
        return _verified(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
    if SHIPPED.exists():
        return _verified(SHIPPED, "the copy shipped in assets/")
    cached = cache_dir() / FILE_NAME
    if cached.exists():
        return _verified(cached, "the user cache")
    if not download:
        raise ModelFileError(
            f"face landmarker model not found: set {ENV_VAR} to a copy of {FILE_NAME} "
            f"or allow the download from {FACE_LANDMARKER.url}"
        )
    return _download(cached)


def _verified(path: Path, origin: str) -> Path:
    if not path.is_file():
        raise ModelFileError(f"face landmarker model from {origin}: {path} is not a file")
    stat = path.stat()
    digest = _digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if digest != FACE_LANDMARKER.sha256:
        raise ModelFileError(
            f"face landmarker model from {origin}: {path} has sha256 {digest[:16]}..., "
            f"not the official {FACE_LANDMARKER.sha256[:16]}... (wrong or corrupted file)"
        )
    return path


@lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:  # keyed on size+mtime: re-hash on change
    return sha256_file(path)


def _download(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".face_landmarker-", dir=target.parent)
    os.close(handle)
    import urllib.request  # here: ssl and http take 0.1 s to import, and are rarely needed

    try:
        try:
            with urllib.request.urlopen(FACE_LANDMARKER.url, timeout=60) as response:
                data = response.read(FACE_LANDMARKER.size + 1)
        except OSError as exc:
            raise ModelFileError(
                f"face landmarker model: download from {FACE_LANDMARKER.url} failed ({exc}); "
                f"set {ENV_VAR} to a local copy of {FILE_NAME}"
            ) from None
        Path(partial).write_bytes(data)
        _verified(Path(partial), "the download")
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target
