"""Upload components that check a file with our own readers before Gradio's preprocessing sees
it: a bad upload (a text file renamed .jpg, a broken clip) is one sentence naming the file as
the user named it, never a library's traceback or a server path (README: Limits)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..config import LIMITS
from ..errors import InputError
from ..io.media import read_image, read_video
from . import texts


def _shown_name(payload) -> str:
    """The file's name as the user knows it (never the server's temporary path)."""
    name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", "") or "").name
    return f"“{Path(name).name}”" if name else "This file"


def checked_image_file(path: str | Path, shown_name: str = "This file") -> None:
    """Raises gr.Error with one sentence when ``path`` is not an image the app can read."""
    try:
        read_image(path)
    except InputError:
        raise gr.Error(
            texts.BAD_IMAGE.format(name=shown_name, megabytes=LIMITS.max_image_bytes // 2**20),
            print_exception=False,
        ) from None


def checked_video_file(path: str | Path, shown_name: str = "This file") -> None:
    """Raises gr.Error with one sentence when ``path`` is not a video the app can read (its
    first half second is decoded: a broken or non-video file fails there)."""
    try:
        read_video(path, until_s=0.5)
    except InputError:
        raise gr.Error(texts.BAD_VIDEO.format(name=shown_name), print_exception=False) from None


def checked_upload(component: gr.Image | gr.Video, check) -> gr.Image | gr.Video:
    """``component`` with ``check(path, shown_name)`` run on each upload before its own
    preprocessing (an instance attribute, not a subclass: Gradio writes a type-stub file next
    to the module of every component class)."""
    preprocess = component.preprocess

    def checked_preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            check(payload.path, _shown_name(payload))
        return preprocess(payload)

    component.preprocess = checked_preprocess
    return component


def checked_image(**kwargs) -> gr.Image:
    """gr.Image whose uploads are read by ``read_image`` before Gradio opens them."""
    return checked_upload(gr.Image(**kwargs), checked_image_file)


def checked_video(**kwargs) -> gr.Video:
    """gr.Video whose uploads are read by ``read_video`` before Gradio handles them."""
    return checked_upload(gr.Video(**kwargs), checked_video_file)


__all__ = [
    "checked_image",
    "checked_image_file",
    "checked_upload",
    "checked_video",
    "checked_video_file",
]
