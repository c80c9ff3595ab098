"""The graded toy worlds of issue 27 (EXPERIMENTS.md: The graded worlds), as one command:
worlds a-d, each with the full model on seeds 0 and 1, and on seed 0 the C3 ablation and the
noise floor (expression codes shuffled between training samples); the same model and step
budget everywhere. Writes OUT/<world>-s<seed>/ (each run's results.json and table.md) and
OUT/graded.md, OUT/graded.json (the table). A run already done (its results.json there) is
read, not run again, so an interrupted table resumes.

    nice -n 19 .venv/bin/python scripts/toy_world_graded.py runs/graded [--worlds a b c d]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factorportrait.toy_world.experiment import Settings, run
from factorportrait.toy_world.world import FACTOR_FIELDS

STEPS = 300
# (seed, variants): the full model on two seeds; on the first the noise floor and C3 too.
RUNS = ((0, ("full", "shuffled-codes", "c3-landmarks")), (1, ("full",)))
SWAPPED = ("reference", "normals", "rays", "expression")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--worlds", nargs="+", default=["a", "b", "c", "d"])
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    table = {}
    for world in args.worlds:
        for seed, variants in RUNS:
            folder = args.out / f"{world}-s{seed}"
            done = folder / "results.json"
            if done.is_file() and set(variants) <= set(json.loads(done.read_text())["variants"]):
                results = json.loads(done.read_text())
            else:
                settings = Settings(
                    minutes=0, seed=seed, world=world, variants=variants, steps=args.steps
                )
                results = run(folder, settings)
            for name, metrics in results["variants"].items():
                table[f"{world} {name} s{seed}"] = {
                    "world": world,
                    "variant": name,
                    "seed": seed,
                    "steps": results["settings"]["steps"],
                    "beta": metrics["beta"],
                    "swap_ratio": metrics["swap_ratio"],
                    "one_step_swap_ratio": metrics["denoise_swap_ratio"],
                    "error": metrics["error"]["all"],
                    "minutes": round((metrics["train_seconds"] + metrics["eval_seconds"]) / 60, 1),
                }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "graded.json").write_text(json.dumps(table, indent=1))
    (args.out / "graded.md").write_text(markdown(table))
    print(markdown(table), end="")
    print(f"{(time.perf_counter() - began) / 60:.1f} min; table in {args.out / 'graded.md'}")
    return 0


def markdown(table: dict) -> str:
    """One row per world, model and seed: beta +- SE per factor, then the swap ratios (10-step
    generation) and the one-step ones."""
    lines = [
        "| world | model | seed | steps | "
        + " | ".join(f"beta {f}" for f in FACTOR_FIELDS)
        + " | "
        + " | ".join(f"swap {f}" for f in SWAPPED)
        + " | "
        + " | ".join(f"one-step {f}" for f in SWAPPED)
        + " | error | min |",
        "|" + "---|" * (5 + len(FACTOR_FIELDS) + 2 * len(SWAPPED) + 1),
    ]
    for row in table.values():
        betas = [row["beta"].get(f) for f in FACTOR_FIELDS]
        cells = [
            row["world"],
            row["variant"],
            str(row["seed"]),
            str(row["steps"]),
            *("-" if b is None else f"{b['mean']:.4f} ± {b['se']:.4f}" for b in betas),
            *(f"{row['swap_ratio'][f]:.3f}" for f in SWAPPED),
            *(f"{row['one_step_swap_ratio'][f]:.3f}" for f in SWAPPED),
            f"{row['error']:.3f}",
            f"{row['minutes']}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
