"""Several checkpoints or engines on the same held-out inputs, every metric side by side: the
paper's ablation table (full model vs C1-C3) and its comparison with other methods
(README: Evaluation, The paper's table).

Three sources of runs, each ending in a folder of results that ``harness.evaluate`` reads:

- ``generate_prepared``: a FactorPortrait checkpoint on the validation split of a prepared
  folder (self-reenactment: the ground truth is the held-out clip itself, through the VAE);
- ``generate_inputs``: any engine (a FactorPortrait checkpoint or wan-animate) on a JSON-lines
  file of portraits, driving clips and modes, with optional ground-truth videos;
- existing results: folders or manifests (``generate --save-conditioning`` output, or a
  training run's ``validation/index.jsonl``).

``compare`` evaluates them all with one tracker and writes ablation.json, ablation.md (the
table) and ablation.html (the table and the videos side by side).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engines import FACTORPORTRAIT, GEOMETRY, WAN_ANIMATE, engine_info
from ..errors import InputError
from ..io import staged_output_dir, write_json
from ..tracking import FaceTracker
from . import harness
from .identity import (
    ARCFACE_CSIM_KEY,
    DLIB_DISTANCE_KEY,
    DLIB_SAME_PERSON_DISTANCE,
    DLIB_SAME_PERSON_KEY,
)

# The table's columns, in order: (summary key, heading, higher is better). Identity is headed
# by the embedder that measured it: only ArcFace's cosine is the CSIM papers quote; dlib's is its
# descriptor distance (the same person below 0.6) and the share of frames under 0.6.
COLUMNS = (
    ("psnr_db", "PSNR", True),
    ("ssim", "SSIM", True),
    ("lpips", "LPIPS", False),
    ("fvd", "FVD", False),
    (ARCFACE_CSIM_KEY, "ArcFace CSIM", True),
    (DLIB_DISTANCE_KEY, "dlib distance", False),
    (DLIB_SAME_PERSON_KEY, "dlib same person", True),
    ("expression_l1", "Expr. L1", False),
    ("head_rotation_deg", "Pose rot. (°)", False),
    ("head_translation_cm", "Pose trans. (cm)", False),
    ("camera_rotation_deg", "Cam. rot. (°)", False),
    ("camera_translation_rel", "Cam. trans.", False),
    ("view_consistency_cm", "View cons. (cm)", False),
    ("shape_rigidity_cm", "3D shape (cm)", False),
    ("identity_drift", "Id. drift", False),
    ("landmark_jitter_px", "Jitter (px)", False),
    ("face_tracked_fraction", "Face found", True),
)


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
    if source.rstrip(":") == GEOMETRY:
        return Run(label, GEOMETRY, "")
    if colon and engine in (FACTORPORTRAIT, WAN_ANIMATE):
        return Run(label, engine, rest)
    if results:
        return Run(label, "results", source)
    return Run(label, _engine_of(source), source)


def _engine_of(checkpoint: str) -> str:
    index = Path(checkpoint) / "model_index.json"
    if index.is_file():
        try:
            name = json.loads(index.read_text()).get("_class_name", "")
        except (json.JSONDecodeError, AttributeError):
            name = ""
        if name == "WanAnimatePipeline":
            return WAN_ANIMATE
    return FACTORPORTRAIT


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

    if run.engine != FACTORPORTRAIT:
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

    from ..pipelines.generation import generate_frames, load_pipeline, write_generation

    if not engine_info(run.engine).needs_model:  # the geometric engine: no checkpoint
        from ..engines.banner import label_geometry
        from ..engines.geometry import render_geometry

        def make(cond):
            return label_geometry(render_geometry(cond))
    elif run.engine == WAN_ANIMATE:
        from ..engines.wan_animate.engine import generate_wan_animate, load_wan_animate

        pipeline = load_wan_animate(run.source, device)

        def make(cond):
            return generate_wan_animate(pipeline, cond, steps=steps, guidance=guidance, seed=seed)
    else:
        pipeline = load_pipeline(run.source, device=device)

        def make(cond):
            return generate_frames(
                pipeline, cond, steps=steps, guidance=guidance, seed=seed, warn=False
            )

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


# -- comparing ------------------------------------------------------------------------------


def compare(
    runs: dict[str, tuple[Run, Path]],
    out: str | Path,
    *,
    landmarker: str | Path | None = None,
    measures: harness.Measures | None = None,
) -> dict:
    """Evaluate each run's results (label -> (run, folder or manifest)) and write
    OUT/ablation.json, OUT/ablation.md and OUT/ablation.html. Returns the comparison."""
    out = Path(out)
    reports = {}
    with FaceTracker(landmarker) as tracker:
        for label, (_, results) in runs.items():
            reports[label] = harness.evaluate(results, None, measures=measures, tracker=tracker)
    table = {}
    for label, report in reports.items():
        row = dict(report["aggregate"])
        row["face_tracked_fraction"] = float(
            np.mean([s["face_tracked_fraction"] for s in report["samples"]])
        )
        table[label] = row
    comparison = {
        "runs": {
            label: {"engine": run.engine, "source": run.source, "results": str(results)}
            for label, (run, results) in runs.items()
        },
        "table": table,
        "skipped": _skipped(reports),
        "reports": reports,
    }
    videos = {label: _videos(results, reports[label]) for label, (_, results) in runs.items()}
    with staged_output_dir(out) as stage:
        write_json(stage / "ablation.json", comparison)
        (stage / "ablation.md").write_text(render_markdown(comparison), encoding="utf-8")
        page = render_html(comparison, videos, out)
        (stage / "ablation.html").write_text(page, encoding="utf-8")
    return comparison


def _skipped(reports: dict) -> dict[str, str]:
    """Metric -> why it is missing, for the table's notes (the first reason seen)."""
    reasons = {}
    for report in reports.values():
        for sample in report["samples"]:
            for key, value in sample["summary"].items():
                if isinstance(value, str) and value.startswith("skipped"):
                    reasons.setdefault(key, value)
    return reasons


def _videos(results: Path, report: dict) -> dict[str, dict[str, Path | None]]:
    """Sample name -> its video and ground truth files."""
    samples = {s.name: s for s in harness.find_samples(results)}
    return {
        name: {"video": samples[name].video, "ground_truth": samples[name].ground_truth}
        for name in (s["name"] for s in report["samples"])
    }


def _covered(comparison: dict, label: str) -> tuple[int, dict[str, int]]:
    """A run's videos and how many of them each of its means is over (harness's
    ``measured``)."""
    report = comparison["reports"][label]
    return report["count"], report.get("measured", {})


def _cells(comparison: dict) -> tuple[list[tuple[str, str, bool]], dict[str, dict[str, str]]]:
    """The columns present in any run (or skipped) and each run's formatted cells, the best
    value of each column in bold, and "(n of N)" after a mean over fewer than the run's N
    videos (a metric skipped for some)."""
    table, skipped = comparison["table"], comparison["skipped"]
    columns = [c for c in COLUMNS if any(c[0] in row for row in table.values()) or c[0] in skipped]
    cells = {label: {} for label in table}
    for key, _, higher in columns:
        values = {label: row[key] for label, row in table.items() if key in row}
        # The best in bold, where the runs differ at all.
        distinct = len(set(values.values())) > 1
        best = (max if higher else min)(values.values()) if distinct else None
        for label in table:
            if label not in values:
                cells[label][key] = "skipped" if key in skipped else "-"
            else:
                text = f"{values[label]:.4g}"
                count, measured = _covered(comparison, label)
                if measured.get(key, count) != count:
                    text += f" ({measured[key]} of {count})"
                cells[label][key] = f"**{text}**" if values[label] == best else text
    return columns, cells


def render_markdown(comparison: dict) -> str:
    """The table as in the paper: one row per run, one column per metric (↑ higher is
    better, ↓ lower), the best in bold; notes on skipped metrics below."""
    columns, cells = _cells(comparison)
    header = "| run | engine | videos | " + " | ".join(
        f"{title} {'↑' if higher else '↓'}" for _, title, higher in columns
    )
    lines = [header + " |", "|---|---|---:|" + "---:|" * len(columns)]
    for label, run in comparison["runs"].items():
        row = " | ".join(cells[label][key] for key, _, _ in columns)
        lines.append(f"| {label} | {run['engine']} | {_covered(comparison, label)[0]} | {row} |")
    lines += [
        "",
        'Means over each run\'s videos; "(n of N)" after a mean over fewer (a metric skipped for'
        " some). Pose, camera and view errors are on motion relative to the first frame (README:"
        " Evaluation).",
    ]
    lines += [f"- {note}" for note in _identity_notes(columns)]
    lines += [f"- {key}: {reason}" for key, reason in comparison["skipped"].items()]
    return "\n".join(lines) + "\n"


def _identity_notes(columns: list[tuple[str, str, bool]]) -> list[str]:
    """What the identity columns present are (which embedder, which measure)."""
    keys = {key for key, _, _ in columns}
    notes = []
    if DLIB_DISTANCE_KEY in keys or DLIB_SAME_PERSON_KEY in keys:
        notes.append(
            f"{DLIB_DISTANCE_KEY}, {DLIB_SAME_PERSON_KEY}: identity by dlib's face descriptor,"
            " its distance to the portrait (dlib's rule: the same person below"
            f" {DLIB_SAME_PERSON_DISTANCE}) and the share of frames under it; not a CSIM."
        )
    if ARCFACE_CSIM_KEY in keys:
        notes.append(
            f"{ARCFACE_CSIM_KEY}: the cosine of ArcFace embeddings, the CSIM papers report."
        )
    return notes


def render_html(comparison: dict, videos: dict, out: Path) -> str:
    """The table, then one row per held-out sample: its ground truth and every run's video."""
    columns, cells = _cells(comparison)
    head = "".join(
        f"<th>{html.escape(title)} {'↑' if higher else '↓'}</th>" for _, title, higher in columns
    )
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(run['engine'])}</td>"
        f"<td>{_covered(comparison, label)[0]}</td>"
        + "".join(
            "<td>" + _bold(html.escape(cells[label][key].strip("*")), cells[label][key]) + "</td>"
            for key, _, _ in columns
        )
        + "</tr>"
        for label, run in comparison["runs"].items()
    )
    notes = "".join(
        f"<li>{html.escape(key)}: {html.escape(reason)}</li>"
        for key, reason in comparison["skipped"].items()
    ) + "".join(f"<li>{html.escape(note)}</li>" for note in _identity_notes(columns))
    names = list(dict.fromkeys(name for per_run in videos.values() for name in per_run))
    labels = list(videos)
    grid = []
    for name in names:
        truth = next(
            (
                v[name]["ground_truth"]
                for v in videos.values()
                if v.get(name, {}).get("ground_truth")
            ),
            None,
        )
        tiles = [("ground truth", truth)] + [
            (label, videos[label].get(name, {}).get("video")) for label in labels
        ]
        grid.append(
            f"<h3>{html.escape(name)}</h3><div class='row'>"
            + "".join(_tile(title, path, out) for title, path in tiles)
            + "</div>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>FactorPortrait comparison"
        "</title><style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}.row{display:flex;gap:8px;"
        "flex-wrap:wrap}.row figure{margin:0}video{width:256px}</style></head><body>"
        "<h1>FactorPortrait comparison</h1><table><tr><th>run</th><th>engine</th>"
        "<th>videos</th>"
        f"{head}</tr>{rows}</table><ul>{notes}</ul><h2>Videos</h2>"
        + "".join(grid)
        + "</body></html>"
    )


def _bold(text: str, cell: str) -> str:
    return f"<b>{text}</b>" if cell.startswith("**") else text


def _tile(title: str, path: Path | None, out: Path) -> str:
    if path is None:
        return f"<figure><figcaption>{html.escape(title)}: none</figcaption></figure>"
    source = os.path.relpath(Path(path).resolve(), out.resolve())
    return (
        f"<figure><video src='{html.escape(Path(source).as_posix())}' controls loop muted>"
        f"</video><figcaption>{html.escape(title)}</figcaption></figure>"
    )


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
