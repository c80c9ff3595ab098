"""What the web demo does per request, without Gradio: previews, generation and tracking checks.
Every method takes paths, settings and numbers, returns paths and text, raises InputError with
a sentence for the user, and touches no shared mutable state (the pipeline is loaded once and
only read). Pictures come from ``preview``, guardrails from ``guardrails``, the cost model from
``cost`` and result writing from ``generation``: the CLI uses the same. Every engine (README:
Engines) is reached through its ``engines.protocol.EngineRuntime``; the service holds the
model of each engine that has one loaded and never asks which engine it is talking to."""

from __future__ import annotations

import inspect
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..conditioning import Conditioning, ConditioningSettings, build_conditioning
from ..conditioning.build import start_loading_kernels
from ..conditioning.preview import (
    browser_rays,
    side_by_side,
    tracking_frames,
    write_videos,
)
from ..engines import (
    FACTORPORTRAIT,
    WAN_ANIMATE,
    checked_engine,
    default_engine,
    engine_info,
    engine_runtime,
)
from ..engines.protocol import Stopped
from ..errors import InputError
from ..io import write_video
from ..io.video import mux_audio
from ..pipelines.generation import GenerationSettings
from ..planning.guardrails import TrainedRanges, ranges_of_checkpoint
from ..tracking.cache import TrackingCache
from ..viewpoint import Trajectory, rays_to_rgb
from . import texts
from .upload_tracking import UploadTracking

# The preview strip's height (tracking | normals | rays side by side), pixels.
STRIP_HEIGHT = 256

log = logging.getLogger(__name__)

# A request's folder is made when its outputs are written and is needed only until Gradio has
# copied them into its own cache (before the response is sent): folders older than this are
# removed as new requests come in. Generous, for slow disks; never 0 (concurrent requests).
OUTPUT_TTL_S = 120.0


class GenerationStopped(InputError):
    """A run stopped on the user's Cancel (``cancelled``) or its time budget, after ``step`` of
    ``total`` denoising steps; the message says which, in words."""

    def __init__(self, message: str, *, step: int, total: int, cancelled: bool):
        super().__init__(message)
        self.step, self.total, self.cancelled = step, total, cancelled


# The long stages of a generation, in order, as ``progress`` reports them (README: Web demo).
SIDE_BY_SIDE_HEIGHT = 256  # the result's side-by-side: panels no higher than the page shows
STAGES = ("loading", "encoding", "denoising", "decoding", "rendering", "writing")


@dataclass(frozen=True)
class PreviewResult:
    """A preview's videos, the conditioning they show, its summary and out-of-range warnings;
    for the wan-animate engine also the two videos that drive it (skeleton and face crops)."""

    normals: Path
    rays: Path
    tracking: Path
    strip: Path  # tracking | normals | rays
    conditioning: Conditioning
    summary: str
    warnings: list[str]
    pose: Path | None = None
    face: Path | None = None


@dataclass(frozen=True)
class GenerationResult:
    """The generated video (with the driving clip's sound when it has one), a side-by-side
    (tracking | normals, or wan-animate's skeleton | result), the conditioning, warnings
    (out of the trained range; for wan-animate what it cannot honour) and the engine that
    made it."""

    video: Path
    side_by_side: Path
    conditioning: Conditioning
    warnings: list[str]
    engine: str = FACTORPORTRAIT
    seconds: float = 0.0  # wall time of the whole request


@dataclass
class Service(UploadTracking):
    """Loaded once at start-up; per-request work happens in fresh folders."""

    pipeline: object | None = None  # FactorPortraitPipeline
    checkpoint: str | None = None
    wan_animate: object | None = None  # diffusers' WanAnimatePipeline
    wan_animate_checkpoint: str | None = None
    engine: str = field(default_factory=default_engine)  # the page's default choice
    landmarker: str | None = None
    max_generation_s: float = 900.0  # a run past this is stopped at its next step
    output_ttl_s: float = OUTPUT_TTL_S
    output_root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="factorportrait-"))
    )
    # Tracking by content, shared by every session: uploads are tracked once (BENCHMARKS.md).
    tracking_cache: TrackingCache = field(default_factory=TrackingCache)
    _cancel: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Uploads tracked in the background, one at a time, off the page's queue.
    _background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="track-uploads")
    )
    _waiting_tracking: int = 0

    def __post_init__(self) -> None:
        # The compiled loops of the normals and rays load (about half a second) while the page
        # opens and the uploads are tracked, not in the first Preview.
        start_loading_kernels()

    # --------------------------------------------------------------------------- status
    def loaded(self, engine: str) -> tuple[object | None, str | None]:
        """(model, checkpoint) the service holds for ``engine`` ((None, None): none)."""
        held = {
            FACTORPORTRAIT: (self.pipeline, self.checkpoint),
            WAN_ANIMATE: (self.wan_animate, self.wan_animate_checkpoint),
        }
        return held.get(checked_engine(engine), (None, None))

    def engine_status_markdown(self, engine: str) -> str:
        """What makes a result with ``engine``: its model and device, or what it is."""
        import torch

        model, checkpoint = self.loaded(engine)
        return engine_runtime(engine).status_markdown(
            model, checkpoint, cuda=torch.cuda.is_available()
        )

    def status_markdown(self) -> str:
        """The FactorPortrait checkpoint's line at the top of the page."""
        return self.engine_status_markdown(FACTORPORTRAIT)

    def wan_animate_status_markdown(self) -> str:
        """What the wan-animate engine has loaded (one line, for the status area)."""
        return self.engine_status_markdown(WAN_ANIMATE)

    def pipeline_for(self, engine: str):
        """The loaded model of ``engine``; InputError when that engine needs one and has none
        (None for an engine that needs no model: the geometric one)."""
        info = engine_info(engine)
        model, _ = self.loaded(engine)
        if info.needs_model and model is None:
            raise InputError(info.missing_model)
        return model

    @cached_property
    def trained_ranges(self) -> TrainedRanges | None:
        """What the loaded checkpoint was trained on (its trained_ranges.json), if it says."""
        return ranges_of_checkpoint(self.pipeline)

    # ------------------------------------------------------------------------- requests
    def request_dir(self) -> Path:
        """A fresh folder for one request's outputs; old ones are swept here: those where
        nothing (the folder or a file in it) has changed for the TTL. The folder's own time
        alone would not do: it stops changing once a file is created, while that file may
        still be written for longer than the TTL."""
        now = time.time()
        for old in self.output_root.glob("req-*"):
            if now - last_change(old) > self.output_ttl_s:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.output_root))

    def cancel_event(self, session: str) -> threading.Event:
        """The session's one cancel flag, made on first use (check-then-create: the lock makes
        two first calls of one session share the same flag)."""
        with self._lock:
            event = self._cancel.get(session)
            if event is None:
                event = self._cancel[session] = threading.Event()
            return event

    def conditioning(
        self,
        portrait: str | None,
        driving: str | None,
        settings: ConditioningSettings,
        trajectory: Trajectory | None = None,
    ) -> Conditioning:
        """The request's conditioning; the core validates the settings (the mode among them)
        and says when the mode needs a driving video."""
        if not portrait:
            raise InputError(texts.NO_PORTRAIT)
        with self.tracking_cache.tracker(self.landmarker) as tracker:
            return build_conditioning(
                portrait,
                driving or None,
                settings=settings,
                trajectory=trajectory,
                tracker=tracker,
            )

    def warnings(
        self, cond: Conditioning, trajectory: Trajectory | None, engine: str = FACTORPORTRAIT
    ) -> list[str]:
        """What ``engine`` says of this request: where it leaves what a FactorPortrait
        checkpoint was trained on; for wan-animate, what the public model cannot honour."""
        return engine_runtime(engine).warnings(cond, trajectory, self.loaded(engine)[0])

    def preview(
        self,
        portrait: str | None,
        driving: str | None,
        settings: ConditioningSettings,
        trajectory: Trajectory | None = None,
        *,
        engine: str | None = None,
    ) -> PreviewResult:
        """Conditioning and its preview videos (normals, rays, tracking, strip); for
        wan-animate also the skeleton (pose.mp4) and face-crop (face.mp4) videos it is driven
        by (CPU; no pipeline needed)."""
        engine = checked_engine(engine or self.engine)
        started = time.perf_counter()
        runtime = engine_runtime(engine)
        settings, notes = runtime.request(settings)
        cond = self.conditioning(portrait, driving, settings, trajectory)
        out = self.request_dir()
        # The normals first, on every core (the rasteriser shares frames out to threads); the
        # other pictures on threads of their own beside the encoders (each video's frames made
        # in its own job; the strip waits for the three it shows).
        normal_pictures = cond.normals_rgb()
        with ThreadPoolExecutor(2) as pool:
            rays = pool.submit(lambda: rays_to_rgb(browser_rays(cond)))
            tracking = pool.submit(
                lambda: side_by_side([tracking_frames(cond, cond.height)], cond.height)
            )
            # The overview strip only as large as a page shows it (three panels across a row).
            strip_height = min(cond.height, STRIP_HEIGHT)

            def strip():
                pictures = rays.result()
                directions = pictures[:, :, : pictures.shape[2] // 2]
                return side_by_side([tracking.result(), normal_pictures, directions], strip_height)

            videos = {
                "normals": normal_pictures,
                "rays": rays.result,
                "tracking": tracking.result,
                "strip": strip,
            }
            # The engine's own (wan-animate: the skeleton and face-crop videos it is driven by).
            videos.update(runtime.preview_videos(cond, self.loaded(engine)[0]))
            paths = {name: out / f"{name}.mp4" for name in videos}
            # Encoded at once, one ffmpeg process each (BENCHMARKS.md).
            write_videos({paths[name]: frames for name, frames in videos.items()}, cond.fps)
        return PreviewResult(
            **paths,
            conditioning=cond,
            summary=texts.summary_markdown(cond, time.perf_counter() - started),
            warnings=[*notes, *self.warnings(cond, trajectory, engine)],
        )

    def generate(
        self,
        portrait: str | None,
        driving: str | None,
        settings: ConditioningSettings,
        trajectory: Trajectory | None = None,
        sampling: GenerationSettings = GenerationSettings(),  # noqa: B008 (frozen: shared safely)
        *,
        session: str = "",
        progress: Callable[..., None] | None = None,
        engine: str | None = None,
    ) -> GenerationResult:
        """Conditioning, then diffusion with ``engine``'s pipeline (default: the Service's
        engine); ``generate_frames`` / ``generate_wan_animate`` check ``sampling``.
        ``progress(done, total)`` counts denoising steps over the whole run: a wan-animate
        clip of N segments runs ``steps`` per segment, so total is N x steps. A ``progress``
        that takes a ``stage`` keyword is also told each long stage as it starts (``STAGES``:
        loading, encoding, denoising, decoding, writing). A Cancel or the time budget stops
        the run at its next step with GenerationStopped; a Cancel of the session pressed
        before it started (while it was queued) stops it before anything runs."""
        started = time.monotonic()
        report = _stage_reporter(progress)
        engine = checked_engine(engine or self.engine)
        pipeline = self.pipeline_for(engine)
        cancel = self.cancel_event(session)
        try:
            # A Cancel pressed while this request waited in the queue (the page only lets
            # Cancel set the flag while a run of its session is queued or running).
            if cancel.is_set():
                raise GenerationStopped(
                    texts.CANCELLED_BEFORE_START, step=0, total=sampling.steps, cancelled=True
                )
            return self._generate(
                portrait, driving, settings, trajectory, sampling, engine, pipeline, cancel,
                report, started,
            )  # fmt: skip
        finally:
            cancel.clear()  # the run is over: the next one of this session starts afresh

    def _generate(
        self, portrait, driving, settings, trajectory, sampling, engine, pipeline, cancel, report,
        started,
    ) -> GenerationResult:  # fmt: skip
        runtime = engine_runtime(engine)
        report(0, sampling.steps, "loading")
        settings, notes = runtime.request(settings)
        cond = self.conditioning(portrait, driving, settings, trajectory)
        total = runtime.total_units(cond.frames, sampling.steps)

        def should_stop() -> bool:
            return cancel.is_set() or time.monotonic() - started > self.max_generation_s

        # What the log counts a run in: denoising steps, or the geometric engine's frames.
        unit = "step" if runtime.info.diffusion else "frame"

        import torch

        try:
            frames = runtime.generate(
                pipeline,
                cond,
                steps=sampling.steps,
                guidance=sampling.guidance_scale,
                seed=sampling.seed,
                report=report,
                should_stop=should_stop,
            )
        except Stopped as stop:
            if cancel.is_set():
                log.info("generation cancelled after %s %d of %d", unit, stop.done, stop.total)
                raise GenerationStopped(
                    texts.cancelled_after(stop.done, stop.total),
                    step=stop.done,
                    total=stop.total,
                    cancelled=True,
                ) from None
            log.warning(
                "generation stopped after %s %d of %d: time budget", unit, stop.done, stop.total
            )
            raise GenerationStopped(
                texts.over_time_budget(self.max_generation_s),
                step=stop.done,
                total=stop.total,
                cancelled=False,
            ) from None
        except torch.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise InputError(texts.OUT_OF_MEMORY) from None
        report(total, total, "writing")
        return self._finish(
            driving=driving,
            portrait=portrait,
            trajectory=trajectory,
            engine=engine,
            cond=cond,
            frames=frames,
            started=started,
            notes=notes,
        )

    def _finish(self, portrait, driving, trajectory, engine, cond, frames, started, notes=()):
        """The result written (with the driving clip's sound when it drives the head) and
        shown beside what drove it."""
        from ..pipelines.generation import write_generation

        out = self.request_dir()
        # The result is encoded (its own ffmpeg process) while the side-by-side is composed.
        with ThreadPoolExecutor(1, thread_name_prefix="write-result") as writer:
            written = writer.submit(write_generation, out / "result.mp4", frames, cond)
            # What drove the result beside it: the normal maps, or wan-animate's skeleton; at
            # most SIDE_BY_SIDE_HEIGHT high, the size the page shows it (three panels in half
            # the page's width).
            height = min(cond.height, SIDE_BY_SIDE_HEIGHT)
            control = engine_runtime(engine).control_video(cond)
            strip = side_by_side([tracking_frames(cond, height), control, frames], height)
            side = write_video(out / "side_by_side.mp4", strip, cond.fps)
            video = written.result()["video"]
        file = cond.report.driving_file
        if driving and file is not None and file.has_audio and cond.mode.drives_head:
            video = mux_audio(video, driving, out / "result_with_audio.mp4")
        return GenerationResult(
            video=video,
            side_by_side=side,
            conditioning=cond,
            warnings=[*notes, *self.warnings(cond, trajectory, engine)],
            engine=engine,
            seconds=time.monotonic() - started,
        )


def _stage_reporter(progress: Callable[..., None] | None) -> Callable[[int, int, str], None]:
    """``report(done, total, stage)`` for any ``progress``: one that takes a ``stage`` keyword
    hears every stage; an old ``progress(done, total)`` only the denoising steps, as before."""
    if progress is None:
        return lambda done, total, stage: None
    try:
        parameters = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        parameters = []
    takes_stage = any(p.name == "stage" or p.kind is p.VAR_KEYWORD for p in parameters)

    def report(done: int, total: int, stage: str) -> None:
        if takes_stage:
            progress(done, total, stage=stage)
        elif stage == "denoising":
            progress(done, total)

    return report


def last_change(folder: Path) -> float:
    """The newest modification time of a folder and the files directly in it (0 if gone)."""
    times = []
    for path in (folder, *folder.glob("*")):
        try:
            times.append(path.stat().st_mtime)
        except OSError:  # removed meanwhile
            pass
    return max(times, default=0.0)


__all__ = [
    "GenerationResult",
    "GenerationStopped",
    "PreviewResult",
    "STAGES",
    "Service",
]
