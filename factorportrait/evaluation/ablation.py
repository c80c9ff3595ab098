"""Several checkpoints or engines on the same held-out inputs, every metric side by side: the
paper's ablation table (full model vs C1-C3) and its comparison with other methods
(README: Evaluation, The paper's table). This module runs them; ``ablation_report`` compares
their results and writes the table.

Three sources of runs, each ending in a folder of results that ``harness.evaluate`` reads:

- ``generate_prepared``: a FactorPortrait checkpoint on the validation split of a prepared
  folder (self-reenactment: the ground truth is the held-out clip itself, through the VAE);
- ``generate_inputs``: any engine (a FactorPortrait checkpoint or wan-animate) on a JSON-lines
  file of portraits, driving clips and modes, with optional ground-truth videos;
- existing results: folders or manifests (``generate --save-conditioning`` output, or a
  training run's ``validation/index.jsonl``).

``ablate`` does the whole: it produces each run's results, then ``ablation_report.compare``
evaluates them all with one tracker and writes ablation.json, ablation.md (the table) and
ablation.html (the table and the videos side by side).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..engines import REGISTRY, engine_info, engine_of_checkpoint, engine_runtime
from ..errors import InputError
from ..tracking import FaceTracker
from . import harness
from .ablation_report import compare


@dataclass(frozen=True)
class Run:
    """One column of the comparison: a label, the engine, and a checkpoint (a folder or a Hub
    id) or, for existing results, the folder / manifest holding them."""

    label: str
    engine: str
    source: str


def parse_run(spec: str, *, results: bool = False) -> Run:
    """``LABEL=PATH`` or ``LABEL=ENGINE:PATH`` (ENGINE: factorportrait or wan-animate; without
    it a local checkpoint's model_index.json tells, a Hub id is factorportrait), or
    ``LABEL=geometry`` (the geometric engine: no checkpoint)."""
    label, sep, source = spec.partition("=")
    if not sep or not label or not source:
        raise InputError(f"{spec!r}: expected LABEL=PATH (e.g. full=runs/full/checkpoint-2000)")
    if not all(c.isalnum() or c in "-_." for c in label):
        raise InputError(f"{spec!r}: a label may hold letters, digits, '-', '_' and '.' only")
    engine, colon, rest = source.partition(":")
    named = REGISTRY.get(source.rstrip(":"))
    if named is not None and not named.needs_model:  # an engine with no checkpoint
        return Run(label, named.name, "")
    named = REGISTRY.get(engine)
    if colon and named is not None and named.needs_model:
        return Run(label, engine, rest)
    if results:
        return Run(label, "results", source)
    return Run(label, engine_of_checkpoint(source), source)


def check_labels(runs: list[Run]) -> None:
    labels = [run.label for run in runs]
    if len(set(labels)) != len(labels):
        raise InputError(f"labels must differ: {', '.join(labels)}")
    if not runs:
        raise InputError("nothing to compare: give --checkpoint or --results")


# -- producing results ----------------------------------------------------------------------


def generate_prepared(
    run: Run,
    data: str | Path,
    folder: Path,
    *,
    samples: int | None = None,
    steps: int,
    guidance: float = 1.0,
    seed: int = 0,
    device: str = "auto",
) -> list[str]:
    """A FactorPortrait checkpoint on the first ``samples`` validation samples of a prepared
    folder: NAME.mp4, NAME.ground_truth.mp4 and NAME.conditioning.npz per sample (as training's
    validation writes them). Returns the names."""
    from ..io import write_video
    from ..pipelines.checkpoints import component_digests
    from ..pipelines.generation import load_pipeline, resolve_device
    from ..training.data import PreparedSamples
    from ..training.validation import VALIDATION_FPS, generate_sample, write_held_out

    if not engine_info(run.engine).reads_prepared_latents:
        raise InputError(
            f"{run.label}: a {run.engine} engine cannot read prepared latents; "
            "compare engines on --inputs"
        )
    pipe = load_pipeline(run.source, device=device)
    held_out = PreparedSamples(data, "val")
    if not len(held_out):
        raise InputError(f'--data {data}: no validation samples (split "val")')
    held_out.check_made_by(component_digests(pipe), Path(data))
    count = len(held_out) if samples is None else min(samples, len(held_out))
    target = resolve_device(device)
    names = []
    for index in range(count):
        sample, name = held_out[index], held_out.rows[index]["id"]
        fps = VALIDATION_FPS  # prepared samples do not record theirs
        frames = generate_sample(pipe, sample, steps, target, guidance=guidance, seed=seed)
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"{name}.mp4", frames, fps)
        write_held_out(pipe, sample, folder, name, fps)
        names.append(name)
    return names


@dataclass(frozen=True)
class HeldOutInput:
    """One line of an --inputs file."""

    name: str
    portrait: Path
    driving: Path | None
    mode: str
    camera: str | None
    ground_truth: Path | None
    frames: int | None
    size: int | None
    fps: float | None


def read_inputs(path: str | Path) -> list[HeldOutInput]:
    """JSON lines of {"name", "portrait", "driving"?, "mode", "camera"?, "ground_truth"?,
    "frames"?, "size"?, "fps"?}, paths relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--inputs {path}: no such file")
    inputs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            name, portrait, mode = entry["name"], entry["portrait"], entry["mode"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path.name} line {number}: needs name, portrait, mode ({exc})"
            ) from None
        if not all(c.isalnum() or c in "-_." for c in str(name)):
            raise InputError(f"{path.name} line {number}: name {name!r}: letters, digits, -_.")

        def relative(key, entry=entry):
            return path.parent / entry[key] if entry.get(key) else None

        inputs.append(
            HeldOutInput(
                str(name),
                path.parent / portrait,
                relative("driving"),
                mode,
                entry.get("camera"),
                relative("ground_truth"),
                entry.get("frames"),
                entry.get("size"),
                entry.get("fps"),
            )
        )
    if not inputs:
        raise InputError(f"--inputs {path}: no inputs")
    return inputs


def build_input_conditionings(inputs: list[HeldOutInput], tracker: FaceTracker) -> dict:
    """One Conditioning per input, built once and shared by every engine."""
    from ..conditioning import ConditioningSettings, build_conditioning
    from ..config import VIDEO
    from ..viewpoint.presets import resolve_trajectory

    built = {}
    for item in inputs:
        settings = ConditioningSettings(
            mode=item.mode,
            frames=item.frames,
            fps=item.fps or VIDEO.fps,
            height=item.size or VIDEO.height,
            width=item.size or VIDEO.width,
        ).validated()
        trajectory = resolve_trajectory(item.camera) if item.camera else None
        built[item.name] = build_conditioning(
            item.portrait, item.driving, settings=settings, trajectory=trajectory, tracker=tracker
        )
    return built


def generate_inputs(
    run: Run,
    inputs: list[HeldOutInput],
    conditionings: dict,
    folder: Path,
    *,
    steps: int,
    guidance: float,
    seed: int,
    device: str = "auto",
) -> list[str]:
    """Any engine on the inputs: NAME.mp4 + NAME.conditioning.npz (+ the reference portrait
    and the input's ground truth) per input. Returns the names."""
    import cv2

    from ..pipelines.generation import write_generation

    runtime = engine_runtime(run.engine)
    model = runtime.load(run.source, device=device) if engine_info(run.engine).needs_model else None

    def make(cond):
        return runtime.generate(model, cond, steps=steps, guidance=guidance, seed=seed)

    folder.mkdir(parents=True, exist_ok=True)
    for item in inputs:
        cond = conditionings[item.name]
        write_generation(folder / f"{item.name}.mp4", make(cond), cond, save_conditioning=True)
        cv2.imwrite(
            str(folder / f"{item.name}.reference.png"),
            cv2.cvtColor(cond.reference, cv2.COLOR_RGB2BGR),
        )
        if item.ground_truth is not None:
            (folder / f"{item.name}.ground_truth.mp4").write_bytes(item.ground_truth.read_bytes())
    return [item.name for item in inputs]


def ablate(
    out: str | Path,
    *,
    checkpoints: list[str] = (),
    results: list[str] = (),
    data: str | Path | None = None,
    inputs: str | Path | None = None,
    samples: int | None = None,
    steps: int = 30,
    guidance: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    landmarker: str | Path | None = None,
    measures: harness.Measures | None = None,
) -> dict:
    """The whole comparison: each checkpoint generates the held-out set (``data``: a prepared
    folder's validation split; or ``inputs``: a JSON-lines file) into OUT/LABEL/, each
    ``results`` entry is taken as it is, and ``compare`` lays them side by side."""
    out = Path(out)
    generated = [parse_run(spec) for spec in checkpoints]
    existing = [parse_run(spec, results=True) for spec in results]
    check_labels(generated + existing)
    if generated and (data is None) == (inputs is None):
        raise InputError("checkpoints need exactly one held-out set: --data or --inputs")
    folders: dict[str, tuple[Run, Path]] = {}
    if generated and inputs is not None:
        held_out = read_inputs(inputs)
        with FaceTracker(landmarker) as tracker:
            conditionings = build_input_conditionings(held_out, tracker)
    for run in generated:
        folder = out / run.label
        if data is not None:
            generate_prepared(
                run, data, folder, samples=samples, steps=steps, guidance=guidance, seed=seed,
                device=device,
            )  # fmt: skip
        else:
            generate_inputs(
                run, held_out, conditionings, folder, steps=steps, guidance=guidance,
                seed=seed, device=device,
            )  # fmt: skip
        folders[run.label] = (run, folder)
    for run in existing:
        folders[run.label] = (run, Path(run.source))
    return compare(folders, out, landmarker=landmarker, measures=measures)
