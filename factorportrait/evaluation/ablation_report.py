"""The ablation's report: each run's results (``ablation``) evaluated with one tracker and laid
side by side, as ablation.json, ablation.md (the paper's table: one row per run, one column per
metric, the best in bold) and ablation.html (the table and the videos side by side).
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io import staged_output_dir, write_json
from ..tracking import FaceTracker
from . import harness
from .identity import (
    ARCFACE_CSIM_KEY,
    DLIB_DISTANCE_KEY,
    DLIB_SAME_PERSON_DISTANCE,
    DLIB_SAME_PERSON_KEY,
)

if TYPE_CHECKING:
    from .ablation import Run

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
