"""What the web demo says to its users: headings, explanations, messages and the markdown built
from results. Kept apart from the layout (blocks.py) and the request handling (service.py,
handlers.py) so the wording can be read and changed in one place."""

from __future__ import annotations

import math

from ..config import LIMITS
from ..engines import FACTORPORTRAIT, REGISTRY, engine_info
from ..modes import Mode

TITLE = "FactorPortrait"
INTRO = (
    "# FactorPortrait\nOne photo + a driving video + a camera path → a video of "
    "that person with the video's expressions and head motion, filmed along "
    "the path."
)
MEDIA_LIMITS = (
    f"Photos: JPEG, PNG, WebP or AVIF, up to {LIMITS.max_image_bytes // 2**20} MB and "
    f"{LIMITS.max_image_pixels // 1_000_000} megapixels. Videos: up to "
    f"{LIMITS.max_video_bytes // 2**20} MB and {LIMITS.max_video_seconds:.0f} s. "
    f"Output: up to {LIMITS.max_frames} frames, sides up to {LIMITS.max_side} px."
)
EXAMPLE_LABEL = "Example (public-domain photo; clip made by this project)"
CAMERA_PATH_HEADING = "### Camera path"
NOVEL_VIEW_HEADING = "### Novel view"
KEYFRAMES_LABEL = (
    "Keyframes (t 0→1; azimuth, elevation, roll in degrees from the photo's "
    "view; distance as a factor; fov in degrees)"
)
FAST_BUTTON = "Fast (fits a free ZeroGPU call)"

# Messages (raised as InputError or shown beside a control).
FACE_FOUND = "Face found."
NO_FACE_IN_PHOTO = (
    "No face found in this photo. Use a photo with one clearly "
    "visible face, looking roughly at the camera."
)
NO_FACE_IN_CLIP = "No face found in this clip. Use a clip where one face is clearly visible."
NO_PORTRAIT = "Upload a portrait photo first."
NO_CAMERA_PATH = "Choose a camera path (a preset or your keyframes)."
OUT_OF_MEMORY = (
    "The GPU ran out of memory for these settings. Try fewer frames, "
    "a smaller size, or the fast setting."
)
CANCELLING = "Cancelling at the next step…"
CANCELLED_BEFORE_START = "Cancelled before it started."
NOTHING_TO_CANCEL = "Nothing is running."
RESULT_LABEL = "**Result**"
NOT_DIFFUSION_SETTING = "not used by the geometric engine (no diffusion)"
# The page's output sizes (square): the usual ones and each engine's own default.
SIZES = tuple(sorted({256, 384, 512, 768} | {e.default_size() for e in REGISTRY.values()}))
SIDE_BY_SIDE_LABEL = "**Driving | normals (wan-animate: skeleton) | result**"
DOWNLOAD_RESULT = "Download the result (mp4)"
STARTING = "Starting…"
RUN_NOT_STARTED = (
    "the run could not start: an input on the page is not valid (see the note beside the "
    "upload); replace it and press Generate again"
)
BAD_IMAGE = (
    "{name} is not a photo this app can read ({reason}): use a JPEG, PNG, WebP or AVIF image "
    "(up to {megabytes} MB and {megapixels} megapixels)."
)
OVER_LIMIT_IMAGE = "{name} was refused: {reason}. Use a smaller photo."
BAD_VIDEO = (
    "{name} is not a video this app can read ({reason}): use an MP4, MOV or WebM clip with a face."
)
OVER_LIMIT_VIDEO = "{name} was refused: {reason}. Use a shorter or smaller clip."
# Reader reasons that mean "a good file, too large" rather than "not a file we can read".
_OVER_LIMIT = ("over the", "too many pixels", "more than")


def refused_image(name: str, reason: str) -> str:
    """One sentence for a refused photo: the real reason (a limit, with its numbers, or why
    it cannot be read), naming the file as the user named it."""
    if any(mark in reason for mark in _OVER_LIMIT):
        return OVER_LIMIT_IMAGE.format(name=name, reason=reason)
    return BAD_IMAGE.format(
        name=name,
        reason=reason,
        megabytes=LIMITS.max_image_bytes // 2**20,
        megapixels=f"{LIMITS.max_image_pixels / 1e6:g}",
    )


def refused_video(name: str, reason: str) -> str:
    """One sentence for a refused driving clip (as ``refused_image``)."""
    if any(mark in reason for mark in _OVER_LIMIT):
        return OVER_LIMIT_VIDEO.format(name=name, reason=reason)
    return BAD_VIDEO.format(name=name, reason=reason)


INVALID_TABLE = "The keyframe table is not valid ({reason}): fix it before Preview or Generate."
# The trajectory field holds this instead of a path while the table is invalid: Preview and
# Generate then refuse with the reason (never the last valid path, which no longer matches).
INVALID_TABLE_MARK = "invalid keyframe table: "
CUSTOM_PATH = "custom keyframes"
RAYS_EXPLAINED = (
    "**Ray maps (camera):** for every pixel, the ray the camera sees it along, in the frame of "
    "the portrait's camera. Left half: the ray's direction as colour (x right as red, y down "
    "as green, z forward as blue: straight ahead is lavender). Right half: its moment "
    "(position x direction): flat grey while the camera is where the portrait's was, "
    "coloured as it moves away."
)
THUMBNAIL_LABEL = "What the selected keyframe's camera sees (normal map)"
EXAMPLES_HEADING = (
    "### Examples: one click per mode\nEach sets the bundled photo and clip, the mode and its "
    "camera, and shows the preview."
)
FOUR_MODES_BUTTON = "Preview all four modes"
FOUR_MODES_NOTE = (
    "The four modes for the current photo, clip, path and view: tracking | normal maps | "
    "ray maps each."
)
GENERATE_NO_MODEL = "Generate (no model loaded for this engine)"
STAGE_TEXTS = {
    "loading": "Loading: reading and tracking the inputs",
    "encoding": "Encoding the conditions (portrait, normal and ray maps, expressions)",
    "rendering": "Rendering the photo's frames (geometric engine)",
    "denoising": "Denoising",
    "decoding": "Decoding the frames",
    "writing": "Writing the video",
}
WARNING = "⚠️"

# The engine selector: what each engine is and is not, one line each (README: Engines).
ENGINE_LABEL = "Engine"


def engine_markdown(selected: str) -> str:
    """Every engine, one line each, the chosen one in bold."""
    return "\n".join(
        f"- **{e.page_text}**" if e.name == selected else f"- {e.page_text}"
        for e in REGISTRY.values()
    )


def faces_found(count: int) -> str:
    return f"{count} faces found: the largest one is used." if count > 1 else FACE_FOUND


def clip_face_found(frames: int, duration_s: float, has_audio: bool) -> str:
    return f"Face found. {plural(frames, 'frame')}, {duration_s:.1f} s" + (
        ", with audio." if has_audio else "."
    )


def over_time_budget(budget_s: float) -> str:
    return (
        f"Generation stopped: it ran past its time budget of "
        f"{budget_s:.0f} s. Try fewer frames or steps."
    )


def plural(count: int, word: str) -> str:
    """ "1 frame", "2 frames": a count with its noun."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def warning(message: str) -> str:
    return f"{WARNING} {message}"


def mode_markdown(selected: Mode) -> str:
    """All four modes, one line each, the chosen one in bold."""
    return "\n".join(
        f"- **{m}: {m.description}**" if m == selected else f"- {m}: {m.description}" for m in Mode
    )


def estimate_markdown(
    seconds: float,
    gpu_gib: float,
    zerogpu_s: int,
    engine: str = FACTORPORTRAIT,
    gpu_gib_offload: float | None = None,
) -> str:
    model = engine_info(engine).estimate_model
    if model is None:
        return (
            f"Estimated for the {engine} engine: about **{math.ceil(seconds)} s** on this "
            "machine's CPU; no GPU, no model."
        )
    offload = f" ({gpu_gib_offload:.0f} GiB with model CPU offload)" if gpu_gib_offload else ""
    return (
        f"Estimated on a large GPU for {model}: about **{math.ceil(seconds)} s**, "
        f"**{gpu_gib:.0f} GiB** of GPU memory{offload}; a ZeroGPU call of "
        f"**{zerogpu_s} s** (rough)."
    )


def summary_markdown(cond, seconds: float | None = None) -> str:
    """What the conditioning build found and did, in a few sentences; ``seconds``: the whole
    preview's time (the build's stages, then the pictures and videos), when known."""
    report = cond.report
    parts = [f"{cond.frames} frames at {cond.width}x{cond.height}, {cond.fps:g} fps."]
    clip = report.clip
    if clip is not None:
        filled = f", {clip.frames_filled} filled in." if clip.frames_filled else "."
        parts.append(f"Face tracked in {clip.faces_tracked} driving frames{filled}")
        parts.append(
            f"Jitter {clip.jitter_px_raw:.2f} px -> {clip.jitter_px:.2f} px after smoothing."
        )
    total = sum(report.seconds.values()) if seconds is None else seconds
    parts.append(f"Built in {total:.1f} s on the CPU.")
    parts += [f"Note: {w}" for w in report.warnings]
    return " ".join(parts)


def with_warnings(text: str, warnings: list[str]) -> str:
    """A result's text followed by each out-of-range warning as its own paragraph."""
    return text + "".join(f"\n\n{warning(w)}" for w in warnings)


def cancelled_after(step: int, total: int) -> str:
    return f"Cancelled after step {step} of {total}."


def run_status(stage: str, done: int, total: int, seconds: float, cancelling: bool) -> str:
    """The line beside the buttons while a generation runs: its stage, step and time."""
    text = STAGE_TEXTS.get(stage, stage)
    if stage == "denoising":
        text = f"{text}: step {done} of {total}"
    elif stage == "rendering" and total:
        text = f"{text}: frame {done} of {total}"
    line = f"⏳ **{text}** · {seconds:.0f} s"
    return f"{line}\n\n{CANCELLING}" if cancelling else line


def result_note(
    status: str,
    *,
    engine: str,
    mode,
    path: str | None,
    frames: int,
    width: int,
    height: int,
    steps: int,
    guidance: float,
    seed: int,
    seconds: float,
    warnings: list[str],
) -> str:
    """What made a result: engine, mode, path, frames x size, steps, guidance, seed, time and
    warnings, then the engine's status line."""
    camera = f", path: {path}" if path else ""
    sampling = (
        f", {plural(steps, 'step')}, guidance {guidance:g}, seed {seed}"
        if engine_info(engine).diffusion
        else f" (the {engine} engine: no steps, no seed)"
    )
    line = (
        f"✅ **Done in {seconds:.0f} s.** Engine: {engine}, mode: {mode}{camera}; "
        f"{plural(frames, 'frame')} x {width}x{height}{sampling}."
    )
    return with_warnings(f"{line}\n\n{status}", warnings)


def stopped_note(message: str) -> str:
    return f"⏹ **{message}**"


def error_note(message: str) -> str:
    return f"{WARNING} **Error:** {message}"


def stale_preview(what: str) -> str:
    return f"{WARNING} Out of date: the {what} changed. Press Preview to see the new conditions."


def superseded_preview(summary: str) -> str:
    """A preview that landed after the page's inputs changed: what it shows is not current."""
    return warning(
        "Superseded: the inputs changed while this preview was made, so it may not show them "
        "(press Preview for the current ones). " + summary
    )


def stale_result(what: str, note: str) -> str:
    return f"{WARNING} **Out of date:** the {what} changed since this result was made.\n\n{note}"


def summary_heading(mode, path: str | None, view: str | None = None) -> str:
    """The first words of a preview summary: the mode and its path or view."""
    camera = f", path: {path}" if path else (f", view: {view}" if view else "")
    return f"**Mode: {mode}{camera}.**"
