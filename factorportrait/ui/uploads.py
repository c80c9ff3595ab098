"""Upload components that check a file with our own readers before Gradio's preprocessing sees
it: a bad upload (a text file renamed .jpg, a broken clip, a photo over the pixel limit) is one
sentence naming the file as the user named it and the real reason, never a library's traceback
or a server path (README: Limits). A refused file never reaches Gradio's own preprocessing: the
handlers get a ``Refused`` value instead, which the upload's handler turns into a note beside the
upload (kept until the input changes) and an empty slot."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..errors import InputError
from ..io.media import read_image, read_video
from . import texts


def _shown_name(payload) -> str:
    """The file's name as the user knows it (never the server's temporary path)."""
    name = getattr(payload, "orig_name", None) or Path(getattr(payload, "path", "") or "").name
    return f"“{Path(name).name}”" if name else "This file"


class Refused(str):
    """An upload our readers refused: the server path (so any handler that reads it gets the
    same InputError from the same reader) with the sentence the page shows (``reason``)."""

    reason: str

    def __new__(cls, path: str, reason: str):
        refused = super().__new__(cls, path)
        refused.reason = reason
        return refused


def _why(exc: InputError, path: str | Path) -> str:
    """The reader's reason without its "image NAME:" prefix (the server's name for the file)."""
    text = str(exc).replace(str(Path(path).parent), "")  # never a server path
    for kind in ("image", "video"):
        text = text.removeprefix(f"{kind} {Path(path).name}: ")
    return text


def checked_image_file(path: str | Path, shown_name: str = "This file") -> None:
    """Raises InputError with one sentence (the file as the user named it, the real reason)
    when ``path`` is not an image the app can read."""
    try:
        read_image(path)
    except InputError as exc:
        raise InputError(texts.refused_image(shown_name, _why(exc, path))) from None


def checked_video_file(path: str | Path, shown_name: str = "This file") -> None:
    """Raises InputError with one sentence when ``path`` is not a video the app can read (its
    first half second is decoded: a broken or non-video file fails there)."""
    try:
        read_video(path, until_s=0.5)
    except InputError as exc:
        raise InputError(texts.refused_video(shown_name, _why(exc, path))) from None


def checked_upload(component: gr.Image | gr.Video, check) -> gr.Image | gr.Video:
    """``component`` with ``check(path, shown_name)`` run on each upload before its own
    preprocessing (an instance attribute, not a subclass: Gradio writes a type-stub file next
    to the module of every component class). A refused file is handed on as ``Refused``."""
    preprocess = component.preprocess

    def checked_preprocess(payload):
        if payload is not None and getattr(payload, "path", None):
            try:
                check(payload.path, _shown_name(payload))
            except InputError as exc:
                return Refused(str(payload.path), str(exc))
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
    "Refused",
    "checked_image",
    "checked_image_file",
    "checked_upload",
    "checked_video",
    "checked_video_file",
]
