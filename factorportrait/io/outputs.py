"""Output folders that are either complete or untouched.

Commands write into a hidden staging folder beside the target and move the files in only once
everything succeeded, so a failure never leaves a half-written result behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError


@contextmanager
def staged_output_dir(out: str | Path) -> Iterator[Path]:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"out: {out} exists and is not a folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise InputError(f"out: the parent folder {parent} does not exist")
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for item in sorted(stage.iterdir()):
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_json(path: str | Path, data: object) -> Path:
    path = Path(path)
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
