"""What a wan-animate request becomes before anything loads (README: Engines): its frame rate
(the driving clip resampled to Wan-Animate's own) and its windows (segments of 77 frames, a
short request padded to one full window and trimmed). Torch-free, so that the command line and
the web service can check a request before the 14B model or the conditioning is touched.

Checked against Wan2.2 ``wan/configs/wan_animate_14B.py`` (``frame_num = 77``,
``sample_fps = 30``), ``wan/animate.py`` (``get_valid_len`` and ``inputs_padding``: the driving
videos padded to whole segments of ``clip_len`` carrying ``refert_num`` = 1 frame, the output
trimmed back) and ``wan/modules/animate/preprocess/process_pipepline.py`` (the driving clip read
at ``fps = 30`` through ``utils.get_frame_indices``: the nearest source frame to each output
time), and against diffusers' ``WanAnimatePipeline.__call__`` (the same padding,
``pad_video_frames``, and ``[:, :, :cond_video_frames]`` trimming; zero segments, and a crash,
for 1 frame).
"""

from __future__ import annotations

from dataclasses import replace

from ...errors import InputError
from .. import WAN_ANIMATE, engine_info

# Wan-Animate's window (``frame_num``/``clip_len``, diffusers' ``segment_frame_length``): 4k+1
# frames, each window after the first carrying the last frame of the one before.
SEGMENT_FRAMES = 77
PREVIOUS_SEGMENT_FRAMES = 1
# The fewest frames a window can be made from: one frame is a still, which leaves the pipeline
# no segment at all (diffusers divides by the number of segments and fails).
MIN_FRAMES = 5


def segment_plan(frames: int) -> dict:
    """How Wan-Animate makes ``frames`` frames: always whole windows of SEGMENT_FRAMES (as
    Wan's own ``generate`` and diffusers do), each after the first carrying the last
    PREVIOUS_SEGMENT_FRAMES of the one before; the driving videos are padded to the last
    window's end (mirrored, by the pipeline) and the output trimmed back to ``frames``.
    Returns segment_frame_length, segments, padded (frames denoised) and a note for the user.
    Counts it cannot make are refused in one sentence (InputError)."""
    check_frames(frames)
    step = SEGMENT_FRAMES - PREVIOUS_SEGMENT_FRAMES
    segments = max(1, -(-(frames - PREVIOUS_SEGMENT_FRAMES) // step))
    padded = segments * step + PREVIOUS_SEGMENT_FRAMES
    if segments == 1:
        note = (
            None
            if frames == SEGMENT_FRAMES
            else f"Wan-Animate makes {frames} frames in one {SEGMENT_FRAMES}-frame window (the "
            f"driving videos padded to {SEGMENT_FRAMES} frames, the output trimmed back to "
            f"{frames})"
        )
    else:
        note = (
            f"Wan-Animate makes {frames} frames as {segments} windows of {SEGMENT_FRAMES} "
            f"(each continuing from the last frame of the one before; the driving videos are "
            f"padded to {padded} frames and the output trimmed back to {frames})"
        )
    return {
        "segment_frame_length": SEGMENT_FRAMES,
        "segments": segments,
        "padded": padded,
        "note": note,
    }


def check_frames(frames: int) -> int:
    """``frames`` if Wan-Animate can make that many (4k+1, at least MIN_FRAMES), else an
    InputError of one sentence."""
    if isinstance(frames, bool) or not isinstance(frames, int):
        raise InputError(f"frames: expected a whole number, got {frames!r}")
    if frames < MIN_FRAMES:
        raise InputError(
            f"frames: wan-animate makes videos of at least {MIN_FRAMES} frames (its windows "
            f"continue from a first frame), not {frames}."
        )
    if (frames - 1) % 4:
        raise InputError(f"frames: wan-animate needs 4k+1 frames, got {frames}.")
    return frames


WAN_FRAMING_SCALE = 3.2  # face sizes across the square: the shoulders at ~80% of its height


def wan_animate_request(settings):
    """(settings, notes): a request's ConditioningSettings as wan-animate makes it, before
    anything loads. The frame rate becomes the engine's own (``engines.REGISTRY``: 30 fps, the
    rate Wan-Animate samples driving clips at; the driving clip is resampled to it by the core,
    which reads the clip at the output times), with a note when the request asked for another;
    a frame count it cannot make is refused (``check_frames``); the portrait framed wider
    (``WAN_FRAMING_SCALE``)."""
    notes = []
    # Head and shoulders, as Wan's preprocessing frames a talking-head video (the pose video's
    # shoulders well inside the frame), not FactorPortrait's tight crop of twice the face.
    settings = replace(settings, framing_scale=WAN_FRAMING_SCALE)
    fps = engine_info(WAN_ANIMATE).default_fps()
    if float(settings.fps) != float(fps):
        notes.append(
            f"wan-animate works at {fps:g} fps (Wan-Animate's own rate): the driving clip is "
            f"resampled to {fps:g} fps instead of the {settings.fps:g} fps asked for."
        )
        settings = replace(settings, fps=fps)
    if settings.frames is not None:
        check_frames(settings.frames)
    return settings, notes
