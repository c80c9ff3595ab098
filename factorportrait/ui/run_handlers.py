"""The handlers of a generation run: what ZeroGPU is asked for, Generate enabled as the engine
allows, the run itself (its stage and step while it runs, its result and note at the end),
its failure and its Cancel. A part of ``handlers.Handlers`` (it uses the session store and the
service that class holds)."""

from __future__ import annotations

import threading
import time

import gradio as gr

from ..engines import ENGINES, engine_info
from ..errors import InputError
from ..pipelines.generation import GenerationSettings
from . import texts
from .controls import request_settings, request_trajectory, user_error
from .editor import path_name
from .estimates import estimate
from .service import GenerationStopped
from .sessions import RunState


class RunHandlers:
    """Generate, its run and its Cancel (mixed into ``handlers.Handlers``)."""

    def gpu_seconds(
        self,
        portrait,
        driving,
        mode,
        trajectory_json,
        azimuth,
        elevation,
        distance,
        frames,
        fps,
        size,
        steps,
        guidance,
        seed,
        engine=None,
        request=None,
    ):
        """What ZeroGPU is asked for, for a generate call with these inputs (the engine's own
        estimate: Wan2.2-Animate-14B asks for more)."""
        engine = engine if engine in ENGINES else self.service.engine
        try:
            cost = estimate(int(frames), int(size), int(steps), float(guidance), engine)
        except (InputError, TypeError, ValueError):  # the run itself refuses it in words
            return 30
        return int(cost["zerogpu_s"])

    def engine_loaded(self, engine: str | None) -> bool:
        try:
            self.service.pipeline_for(engine if engine in ENGINES else self.service.engine)
        except InputError:
            return False
        return True

    def generate_button(self, engine=None):
        """Generate enabled only when the chosen engine has a model loaded (and no run of this
        session is going)."""
        loaded = self.engine_loaded(engine)
        return gr.update(
            interactive=loaded, value="Generate" if loaded else texts.GENERATE_NO_MODEL
        )

    def run_started(self, engine=None, request: gr.Request = None):
        """Generate clicked: (Generate button disabled, the run status). Until the run starts
        (it may wait in the queue behind other people's), a Cancel stops it before it runs."""
        self.session(request).queued = True
        return gr.update(interactive=False), texts.STARTING

    def run_finished(self, engine=None, request: gr.Request = None):
        """After a run, whatever its end (result, error, cancel): Generate back as the engine
        allows."""
        state = self.session(request)
        state.queued = False
        video = state.result_video
        return self.generate_button(engine), gr.update(value=video, visible=video is not None)

    def run_failed(self, engine=None, request: gr.Request = None):
        """After a run that ended in an error (Gradio fires no ``.then`` after one): (Generate,
        run note). A run that never started (the page's inputs were refused before it) says
        so instead of "Starting…"."""
        state = self.session(request)
        note = gr.update()
        if state.queued:  # never started: its inputs failed before the handler ran
            state.queued, state.run_error = False, True
            note = texts.error_note(texts.RUN_NOT_STARTED)
        state.result_video = None
        return self.generate_button(engine), note, gr.update(value=None, visible=False)

    def generate_where_it_runs(
        self, portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames,
        fps, size, steps, guidance, seed, engine=None, request: gr.Request = None,
    ):  # fmt: skip
        """Generate (the page's button and the API's /generate), on a device only for an
        engine that needs a model: ``on_device`` is ``generate`` wrapped by the Space's
        ``spaces.GPU`` (wiring.py), and the geometric engine runs on the Space's own CPU
        instead of waiting in ZeroGPU's queue for a GPU it would not use."""
        chosen = engine if engine in ENGINES else self.service.engine
        run = self.on_device if engine_info(chosen).needs_model else self.generate
        yield from run(
            portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames, fps,
            size, steps, guidance, seed, engine, request=request,
        )  # fmt: skip

    def generate(
        self,
        portrait,
        driving,
        mode,
        trajectory_json,
        azimuth,
        elevation,
        distance,
        frames,
        fps,
        size,
        steps,
        guidance,
        seed,
        engine=None,
        request: gr.Request = None,
    ):
        """Conditioning, then the video with ``engine`` (None: the service's default). Yields (result video, side-by-side, note): while it runs the
        note is the stage and step (loading, encoding, denoising n of N, decoding, writing);
        at the end the mp4 (with the driving audio when it has one), a side-by-side (driving |
        normals | result; for wan-animate driving | skeleton | result) and what made it. A
        Cancel ends it with "Cancelled after step n"."""
        state = self.session(request)
        session = request.session_hash if request is not None else ""
        run = state.run = RunState()
        state.queued = False
        state.result_video = None
        outcome: dict = {}

        def on_progress(done, total, stage="denoising"):
            run.stage, run.done, run.total = stage, done, total
            run.changed.set()

        def work():
            try:
                settings = request_settings(mode, frames, fps, size, azimuth, elevation, distance)
                trajectory = request_trajectory(settings.mode, trajectory_json)
                sampling = GenerationSettings(
                    steps=int(steps), guidance_scale=float(guidance), seed=int(seed)
                )
                outcome["trajectory"] = trajectory
                outcome["result"] = self.service.generate(
                    portrait,
                    driving,
                    settings,
                    trajectory,
                    sampling,
                    session=session,
                    progress=on_progress,
                    engine=engine or None,
                )
            except Exception as exc:  # handed to the page below
                outcome["error"] = exc
            finally:
                run.changed.set()

        worker = threading.Thread(target=work, name="generate", daemon=True)
        try:
            worker.start()
            shown = None
            while worker.is_alive():
                status = texts.run_status(
                    run.stage, run.done, run.total, time.monotonic() - run.started, run.cancelling
                )
                if status != shown:
                    shown = status
                    yield None, None, status
                run.changed.wait(timeout=1.0)
                run.changed.clear()
            worker.join()
        finally:
            state.run = None
        error = outcome.get("error")
        if isinstance(error, GenerationStopped):
            yield None, None, texts.stopped_note(str(error))
            return
        if isinstance(error, InputError):
            state.run_error = True
            yield None, None, texts.error_note(str(error))
            raise user_error(error)
        if error is not None:
            state.run_error = True
            raise error
        result = outcome["result"]
        cond = result.conditioning
        status = self.service.engine_status_markdown(result.engine)
        trajectory = outcome["trajectory"]
        note = texts.result_note(
            status,
            engine=result.engine,
            mode=cond.mode,
            path=path_name(trajectory, self.presets) if trajectory is not None else None,
            frames=cond.frames,
            width=cond.width,
            height=cond.height,
            steps=int(steps),
            guidance=float(guidance),
            seed=int(seed),
            seconds=result.seconds,
            warnings=result.warnings,
        )
        state.result_note = note
        state.result_video = str(result.video)
        yield str(result.video), str(result.side_by_side), note

    def cancel(self, request: gr.Request = None):
        """Cancel: the run stops at its next step (its note then says after which); one still
        queued stops before it starts."""
        state = self.session(request)
        cancel = self.service.cancel_event(request.session_hash if request is not None else "")
        if state.run is None:
            if not state.queued:
                return texts.NOTHING_TO_CANCEL
            # Still queued: the run stops as soon as it starts (Service.generate), before
            # anything is loaded or computed.
            cancel.set()
            return texts.stopped_note(texts.CANCELLED_BEFORE_START)
        state.run.cancelling = True
        state.run.changed.set()
        cancel.set()
        return gr.update()
