"""The GPU benchmark's table: one line per section with the figure it is about, the run's
settings and, for the real size on a GPU, each target met or not."""

from __future__ import annotations

from collections.abc import Callable


def headline(name: str, entry: dict) -> str:
    """The one figure a section is about, for the table."""
    if entry["status"] != "ok":
        return entry.get("reason", "")
    if name == "transformer_step":
        parts = [
            f"{model}: {row['median_s']:.3f} s ({row['overhead_pct']:+.1f}%)"
            for model, row in entry["models"].items()
        ]
        return "; ".join(parts)
    if name == "attention_backends":
        working = ", ".join(
            f"{backend} {entry['backends'][backend]['median_s']:.3f} s"
            for backend in entry["worked"]
        )
        return f"fastest {entry['fastest']} ({working})"
    if "wall_s" in entry:
        peak = f", peak {entry['peak_gb']:.1f} GB" if entry.get("peak_gb") is not None else ""
        done = "" if entry["steps_done"] == entry["steps"] else f" ({entry['steps_done']} steps)"
        return f"{entry['wall_s']:.2f} s{done}{peak}"
    peak = f", peak {entry['peak_gb']:.1f} GB" if entry.get("peak_gb") is not None else ""
    return f"{entry['median_s']:.3f} s per step{peak}"


def section_line(name: str, entry: dict) -> str:
    seconds = entry.get("section_s", 0.0)
    return f"{name:30s} {entry['status']:8s} {seconds:7.1f} s  {headline(name, entry)}"


def print_table(report: dict, log: Callable[[str], None] = print) -> None:
    settings, machine = report["settings"], report["machine"]
    log(
        f"\nbench-gpu: {settings['model']} ({settings['weights']} weights), "
        f"{settings['frames']}x{settings['height']}x{settings['width']}, {settings['steps']} "
        f"steps, guidance {settings['guidance_scale']:g}, {settings['dtype']}, on "
        f"{machine['gpu'] or machine['device']}; torch {machine['torch']}, diffusers "
        f"{machine['diffusers']}; {report['total_s']:.0f} s in all"
    )
    log(f"{'section':30s} {'status':8s} {'time':>9s}  figure")
    for name, entry in report["sections"].items():
        log(section_line(name, entry))
    targets = report["targets"]
    if targets["applies"]:
        log("targets:")
        for key, row in targets.items():
            if key == "applies":
                continue
            verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
            value = "-" if row["value"] is None else f"{row['value']:.2f}"
            log(f"  {key:30s} {value:>8s} (at most {row['at_most']:g}): {verdict}")
