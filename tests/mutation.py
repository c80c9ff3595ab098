"""Mutation testing of the modules where a silent error costs most (TESTING.md).

    .venv/bin/pip install mutmut==3.8.1
    .venv/bin/python tests/mutation.py metrics               # one target, this working tree
    .venv/bin/python tests/mutation.py all --rev a6d5c6d     # every target, at a past commit
    .venv/bin/python tests/mutation.py pipeline --tests-from a6d5c6d   # this code, older tests

mutmut (a well-kept tool; we only choose what it mutates and which tests it runs) changes one
small thing at a time in a copy of the code -- a `+` for a `-`, a constant, a dropped argument --
and runs the tests that reach it. A mutant the tests do not notice "survives": either a hole in
the tests or an equivalent change (TESTING.md lists each survivor and which it is).

Each target runs in its own copy under .cache/mutation/<target> (of the working tree, or of
``--rev``), with its own mutmut configuration: the module, the functions that matter, and only
the test files that test them, so a run takes minutes, not hours. Not run in CI (too slow on
two cores); prints killed/total per target and the survivors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".cache" / "mutation"

# target -> (module, mutant-name patterns, test files). The patterns pick the functions the
# issue named: the metrics; the mode logic and stages of the core; the denoising loop and
# guidance; the training objective and condition dropout.
TARGETS = {
    "metrics": (
        "factorportrait/evaluation/metrics.py",
        ["factorportrait.evaluation.metrics.*"],
        ["tests/test_evaluation*.py"],
    ),
    "conditioning": (
        "factorportrait/conditioning/build.py",
        [
            "factorportrait.conditioning.build.x__output_frames__*",
            "factorportrait.conditioning.build.x__camera_path__*",
            "factorportrait.conditioning.build.x_build_conditioning__*",
        ],
        ["tests/test_conditioning*.py"],
    ),
    "pipeline": (
        "factorportrait/pipelines/pipeline_factorportrait.py",
        [
            "factorportrait.pipelines.pipeline_factorportrait.x_drop_conditions__*",
            "factorportrait.pipelines.pipeline_factorportrait.xǁFactorPortraitPipelineǁ_denoise__*",
        ],
        ["tests/test_pipeline*.py", "tests/test_objective.py"],
    ),
    "objective": (
        "factorportrait/training/objective.py",
        [
            "factorportrait.training.objective.x_flow_matching_sigmas__*",
            "factorportrait.training.objective.xǁFlowMatchingObjectiveǁforward__*",
            "factorportrait.training.objective.x_draw_randomness__*",
            "factorportrait.training.objective.x_training_loss__*",
            "factorportrait.training.objective.x_expression_codes__*",
        ],
        # The unit tests of the objective; test_training.py's end-to-end runs reach the same
        # code but take minutes per mutant on two cores.
        ["tests/test_objective.py"],
    ),
}


def _copy_tree(destination: Path, rev: str | None) -> None:
    """A copy of the tracked files (of ``rev``, or of the working tree). An existing copy is
    updated in place, so mutmut keeps its verdicts for the functions that did not change."""
    if rev and (destination / "mutants").is_dir():
        return  # a revision does not change: resume the run
    destination.mkdir(parents=True, exist_ok=True)
    if rev:
        archive = subprocess.run(
            ["git", "archive", rev], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    else:
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout.split(b"\0")
        for name in filter(None, files):
            source = ROOT / name.decode()
            if source.is_file():
                target = destination / name.decode()
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    link = destination / ".cache" / "test-media"
    link.parent.mkdir(exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(ROOT / ".cache" / "test-media")


def _configure(destination: Path, module: str, tests: list[str]) -> None:
    test_files = sorted(str(p.relative_to(destination)) for t in tests for p in destination.glob(t))
    if not test_files:
        raise SystemExit(f"no test files match {tests} in {destination}")
    config = "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["factorportrait"]',
            f"only_mutate = {json.dumps([module])}",
            'also_copy = ["app.py", "assets", "camera_presets", ".cache"]',
            f"pytest_add_cli_args_test_selection = {json.dumps(test_files)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]',
            "mutate_only_covered_lines = true",
            'process_isolation = "forkserver"',  # torch and mediapipe are not fork-safe
            "",
        ]
    )
    pyproject = destination / "pyproject.toml"
    text = pyproject.read_text()
    text = text[: text.index("\n[tool.mutmut]")] if "\n[tool.mutmut]" in text else text
    pyproject.write_text(text + config)


def _results(destination: Path, mutmut: str, patterns: list[str]) -> dict[str, str]:
    import fnmatch

    listing = subprocess.run(
        [mutmut, "results", "--all", "true"],
        cwd=destination,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    results = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and any(fnmatch.fnmatch(name, p) for p in patterns):
            results[name] = status
    return results


def _use_tests_from(destination: Path, rev: str) -> None:
    """Replace the copy's tests with those of ``rev``: the same code under older tests."""
    shutil.rmtree(destination / "tests")
    archive = subprocess.run(
        ["git", "archive", rev, "tests"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)


def run_target(name: str, rev: str | None, children: int, tests_from: str | None = None) -> dict:
    module, patterns, tests = TARGETS[name]
    label = f"-{rev}" if rev else ""
    label += f"-tests-{tests_from}" if tests_from else ""
    destination = WORK / f"{name}{label}"
    _copy_tree(destination, rev)
    if tests_from:
        _use_tests_from(destination, tests_from)
    _configure(destination, module, tests)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    # mutmut forks a worker per mutant from a process that already ran torch: a thread pool
    # (OpenMP) used before fork() deadlocks the child, so the tests run single-threaded.
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    subprocess.run(
        [mutmut, "run", "--max-children", str(children), *patterns],
        cwd=destination,
        env={**os.environ, **threads},
        stdout=subprocess.DEVNULL,
        check=False,
    )
    results = _results(destination, mutmut, patterns)
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted(n for n, s in results.items() if s in ("survived", "no tests"))
    summary = {
        "target": name,
        "rev": (rev or "working tree") + (f", tests of {tests_from}" if tests_from else ""),
        "killed": counts.get("killed", 0) + counts.get("timeout", 0),
        "total": sum(counts.values()),
        "counts": counts,
        "survivors": survivors,
    }
    print(
        f"{name} ({summary['rev']}): {summary['killed']}/{summary['total']} killed "
        f"{counts}; survivors: {len(survivors)}"
    )
    for survivor in survivors:
        print(f"  {survivor}   (mutmut show {survivor}, in {destination})")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="+", choices=[*TARGETS, "all"])
    parser.add_argument("--rev", help="a git revision to test instead of the working tree")
    parser.add_argument(
        "--tests-from", help="run the tests of this git revision (the 'before' score of a tree)"
    )
    parser.add_argument("--children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--json", type=Path, help="also write the summaries here")
    args = parser.parse_args()
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutmut is not installed: .venv/bin/pip install mutmut==3.8.1", file=sys.stderr)
        return 2
    names = list(TARGETS) if "all" in args.target else args.target
    summaries = [run_target(name, args.rev, args.children, args.tests_from) for name in names]
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
