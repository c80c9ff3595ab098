"""What the page remembers per browser session (kept on the server, not in a gr.State, which
would hold a heartbeat connection open per page): its run, its last preview and result, the
reasons its uploads were refused; and what a preview was made of, to tell when it is out of
date."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_SESSIONS_KEPT = 256
# What each watched input is called in an "out of date" note.
WATCHED_INPUTS = (
    "portrait",
    "driving clip",
    "mode",
    "camera path",
    "view",
    "video settings",
    "engine",
)


def preview_request(portrait, driving, *settings) -> tuple:
    """What a preview is made of, comparable with the page's inputs later: each upload by its
    file name and size (Gradio serves one file under several paths: a copy in its cache), the
    settings as numbers and text."""

    def media(path):
        if not path:
            return None
        try:
            return Path(path).name, Path(path).stat().st_size
        except OSError:
            return Path(path).name, None

    def value(setting):
        return float(setting) if isinstance(setting, int | float) else setting

    return (media(portrait), media(driving), *(value(setting) for setting in settings))


@dataclass
class SessionState:
    """What one browser session's page shows, kept here rather than in a gr.State (a State
    makes every page hold a heartbeat connection open)."""

    engine_videos: tuple[str | None, str | None] = (None, None)
    preview_error: str | None = None  # the last preview's error (it replaces the summary)
    result_note: str | None = None  # the last result's note, while it is up to date
    run: RunState | None = None  # the generation running now
    queued: bool = False  # Generate clicked, its run not started yet (waiting in the queue)
    result_video: str | None = None  # the last run's result (the download button's file)
    run_error: bool = False  # the run note shows an error (a valid preview or example clears it)
    # upload slot -> the reason its last file was refused (kept while the slot is emptied)
    refusals: dict[str, str] = field(default_factory=dict)
    # what the last preview was made of (``preview_request``): a preview that lands after the
    # page's inputs changed is marked out of date
    preview_request: tuple | None = None
    preview_summary: str | None = None


@dataclass
class RunState:
    """A running generation's stage and step, written by the service's progress callback."""

    stage: str = "loading"
    done: int = 0
    total: int = 0
    started: float = field(default_factory=time.monotonic)
    cancelling: bool = False
    changed: threading.Event = field(default_factory=threading.Event)
