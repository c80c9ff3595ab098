"""A fingerprint of what the product computes, to check that moving code changed nothing.

Issue 30 asks that a fixed request's conditioning and a tiny generation be bit-identical before
and after the house's moves. This script touches the package only through names users import
(``factorportrait.build_conditioning``) and the command line, which the moves must keep, so the
same script runs unchanged on both sides of a move:

    python scripts/house_fingerprint.py --out before.json     # on the old tree
    python scripts/house_fingerprint.py --out after.json      # on the new tree
    python scripts/house_fingerprint.py --compare before.json after.json

It hashes every array of one all-dynamic conditioning (17 frames, 128 px, the embedded example
photo and clip, the orbit preset), and the decoded frames of ``generate`` with each engine: a
tiny random FactorPortrait checkpoint, a tiny random Wan2.2-Animate checkpoint and the geometric
engine (2 steps, seed 0). Runs in about a minute on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "assets" / "example_portrait.jpg"
DRIVING = ROOT / "assets" / "example_driving.mp4"
REQUEST = ["--mode", "all-dynamic", "--camera", "orbit", "--frames", "17", "--size", "128"]


def digest(array) -> str:
    array = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(f"{array.dtype}{array.shape}".encode() + array.tobytes()).hexdigest()


def conditioning_fingerprint() -> dict[str, str]:
    from factorportrait import ConditioningSettings, build_conditioning
    from factorportrait.viewpoint.presets import resolve_trajectory

    settings = ConditioningSettings(mode="all-dynamic", frames=17, height=128, width=128)
    cond = build_conditioning(
        str(PORTRAIT), str(DRIVING), settings=settings, trajectory=resolve_trajectory("orbit")
    )
    arrays = {name: value for name, value in vars(cond).items() if isinstance(value, np.ndarray)}
    arrays["normals_rgb"] = cond.normals_rgb()
    return {name: digest(value) for name, value in sorted(arrays.items())}


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "factorportrait", *args], check=True, cwd=ROOT)


def generation_fingerprint(work: Path) -> dict[str, str]:
    from factorportrait.io.media import read_video

    cli("make-tiny-checkpoint", str(work / "tiny"))
    cli("make-tiny-checkpoint", "--engine", "wan-animate", str(work / "tiny-wan"))
    runs = {
        "factorportrait": ["--checkpoint", str(work / "tiny"), "--steps", "2"],
        "wan-animate": ["--checkpoint", str(work / "tiny-wan"), "--steps", "2"],
        "geometry": [],
    }
    found = {}
    for engine, extra in runs.items():
        out = work / f"{engine}.mp4"
        cli(
            "generate", "--engine", engine, *extra, "--seed", "0",
            "--portrait", str(PORTRAIT), "--driving", str(DRIVING), *REQUEST,
            "--out", str(out), "--save-conditioning",
        )  # fmt: skip
        found[f"{engine}.frames"] = digest(read_video(str(out)).frames)
        saved = np.load(out.with_suffix(".conditioning.npz"))
        for key in sorted(saved.files):
            found[f"{engine}.conditioning.{key}"] = digest(saved[key])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the fingerprint here (JSON)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        print(f"{len(before)} vs {len(after)} hashes; differing: {differ or 'none'}")
        return 1 if differ else 0
    with tempfile.TemporaryDirectory() as work:
        found = {
            **{f"conditioning.{k}": v for k, v in conditioning_fingerprint().items()},
            **generation_fingerprint(Path(work)),
        }
    text = json.dumps(found, indent=1, sort_keys=True)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"{len(found)} hashes" + (f" -> {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
