"""The Gradio Blocks page: the layout, section by section, and its wiring. The handlers are in
handlers.py, the words in texts.py, the work in service.py and the package."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import gradio as gr
import spaces

from ..config import GENERATION, LIMITS, VIDEO
from ..engines import ENGINES, engine_info
from ..modes import Mode
from ..viewpoint import Trajectory, load_presets
from . import editor, handlers, texts
from .service import Service, estimate_markdown
from .uploads import checked_image, checked_video

SIZES = list(texts.SIZES)
# Given to launch() (Gradio 6 takes a page's CSS there). The players' empty button corners are
# not drawn over the banner a result carries; on a phone the camera editor's 3D view and the
# engine's description take the whole width instead of a squeezed column each.
PAGE_CSS = """
#result-video .icon-button-wrapper, #side-video .icon-button-wrapper { display: none; }
@media (max-width: 640px) {
  #path-view, #keyframe-thumbnail, #engine, #engine-text { min-width: 100% !important; }
  #path-view .js-plotly-plot { min-height: 320px; }
  #engine-text { font-size: 0.95em; }
}
"""
PRIVATE = {"api_visibility": "private"}  # UI plumbing: not part of the public API
DEFAULT_PRESET = handlers.DEFAULT_PRESET
# Previews and results play by themselves, looping, muted (PAGE_JS mutes every player: browsers
# start only muted videos by themselves; the volume control unmutes a result with sound).
PLAYS_ITSELF = {"autoplay": True, "loop": True}
PAGE_JS = """() => {
    const mute = () => document.querySelectorAll('video:not([data-muted-once])').forEach(v => {
        v.muted = true;
        v.dataset.mutedOnce = '1';
        v.play?.().catch(() => {});
    });
    new MutationObserver(mute).observe(document.body, {subtree: true, childList: true});
    mute();
}"""
# An example brings the mode and its controls (camera editor or view sliders) into view: they
# are what makes one mode's example differ from another's.
SCROLL_TO_MODE = (
    "() => { document.getElementById('mode')?.scrollIntoView({block: 'start'}); return []; }"
)
# Generate and Preview bring the buttons, the run's status and the result into view.
SCROLL_TO_RUN = (
    "() => { document.getElementById('run-panel')?.scrollIntoView({block: 'start'}); return []; }"
)


def build_demo(service: Service) -> gr.Blocks:
    presets = load_presets()
    events = handlers.Handlers(service, presets)
    with gr.Blocks(title=texts.TITLE, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(texts.INTRO)
        gr.Markdown(service.status_markdown(), elem_id="status")
        gr.Markdown(service.wan_animate_status_markdown(), elem_id="engine-status")
        examples = _examples_section()
        media = _media_section()
        mode = _mode_section()
        camera = _camera_path_section(presets)
        novel = _novel_view_section()
        settings = _settings_section(service.engine)
        outputs = _outputs_section(service.engine, events.engine_loaded(service.engine))
        four = _four_modes_section()
        _wire(events, examples, media, mode, camera, novel, settings, outputs, four)
    return demo


# ------------------------------------------------------------------------------- layout
def _examples_section() -> dict[Mode, gr.Button]:
    """One button per mode: the bundled inputs, the mode and its camera, and the preview."""
    gr.Markdown(texts.EXAMPLES_HEADING)
    with gr.Row():
        return {
            mode: gr.Button(f"Example: {mode}", size="sm", elem_id=f"example-{mode}")
            for mode in Mode
        }


def _media_section() -> SimpleNamespace:
    """The portrait and driving uploads, each with its tracking check, and the example."""
    with gr.Row():
        with gr.Column():
            portrait = checked_image(
                label="Portrait photo",
                type="filepath",
                sources=["upload", "webcam"],
                elem_id="portrait",
            )
            portrait_note = gr.Markdown(elem_id="portrait-note")
            portrait_overlay = gr.Image(label="Tracked face", interactive=False, height=220)
        with gr.Column():
            driving = checked_video(
                label="Driving video", sources=["upload", "webcam"], elem_id="driving"
            )
            driving_note = gr.Markdown(elem_id="driving-note")
            driving_overlay = gr.Image(
                label="Tracked face (first frame)", interactive=False, height=220
            )
    gr.Markdown(texts.MEDIA_LIMITS)
    return SimpleNamespace(
        portrait=portrait,
        portrait_note=portrait_note,
        portrait_overlay=portrait_overlay,
        driving=driving,
        driving_note=driving_note,
        driving_overlay=driving_overlay,
    )


def _mode_section() -> SimpleNamespace:
    mode = gr.Radio(
        choices=[(m.value, m.value) for m in Mode],
        value=Mode.FRONTAL_DYNAMIC.value,
        label="Mode",
        elem_id="mode",
    )
    text = gr.Markdown(texts.mode_markdown(Mode.FRONTAL_DYNAMIC))
    return SimpleNamespace(mode=mode, text=text)


def _camera_path_section(presets: dict[str, Trajectory]) -> SimpleNamespace:
    """The camera-path editor (shown for moving-camera modes) and the path it holds, as JSON."""
    first = DEFAULT_PRESET if DEFAULT_PRESET in presets else next(iter(presets))
    with gr.Group(visible=False) as group:
        gr.Markdown(texts.CAMERA_PATH_HEADING)
        with gr.Row():
            preset = gr.Dropdown(
                [*presets, texts.CUSTOM_PATH], value=first, label="Preset", elem_id="preset"
            )
            easing = gr.Radio(
                ["linear", "ease-in-out"], value=presets[first].easing, label="Easing"
            )
        keyframes = gr.Dataframe(
            value=editor.table_from_trajectory(presets[first]),
            headers=editor.COLUMNS,
            datatype="number",
            interactive=True,
            label=texts.KEYFRAMES_LABEL,
            elem_id="keyframes",
        )
        with gr.Row():
            selected = gr.Number(
                value=1, precision=0, minimum=1, label="Selected keyframe", elem_id="selected"
            )
            add = gr.Button("Add keyframe after it", size="sm", elem_id="add-keyframe")
            remove = gr.Button("Remove it", size="sm", elem_id="remove-keyframe")
            load = gr.UploadButton("Load path (.json)", file_types=[".json"], size="sm")
            save = gr.Button("Save path", size="sm")
        saved = gr.File(label="Saved path", visible=False, interactive=False)
        error = gr.Markdown(elem_id="editor-message")
        with gr.Row():
            plot = gr.Plot(
                value=handlers.path_figure(presets[first]),
                label="Path around the template head",
                scale=3,
                elem_id="path-view",
            )
            thumbnail = gr.Image(
                value=handlers.path_thumbnail(presets[first]),
                label=texts.THUMBNAIL_LABEL,
                interactive=False,
                scale=1,
                elem_id="keyframe-thumbnail",
            )
    trajectory_json = gr.Textbox(
        value=presets[first].to_json(), visible=False, label="Trajectory JSON"
    )
    return SimpleNamespace(
        group=group,
        preset=preset,
        easing=easing,
        keyframes=keyframes,
        add=add,
        remove=remove,
        load=load,
        save=save,
        saved=saved,
        error=error,
        plot=plot,
        selected=selected,
        thumbnail=thumbnail,
        trajectory_json=trajectory_json,
    )


def _novel_view_section() -> SimpleNamespace:
    with gr.Group(visible=False) as group:
        gr.Markdown(texts.NOVEL_VIEW_HEADING)
        with gr.Row():
            azimuth = gr.Slider(-60, 60, value=30, step=1, label="Azimuth (°)")
            elevation = gr.Slider(-30, 30, value=0, step=1, label="Elevation (°)")
            distance = gr.Slider(0.6, 1.6, value=1.0, step=0.05, label="Distance (×)")
    return SimpleNamespace(group=group, azimuth=azimuth, elevation=elevation, distance=distance)


def _settings_section(engine: str) -> SimpleNamespace:
    """Frames, rate, size and the sampling settings, starting at the page's engine's own
    defaults (they follow the engine chosen: ``handlers.engine_settings``)."""
    info = engine_info(engine)
    note = None if info.diffusion else texts.NOT_DIFFUSION_SETTING
    with gr.Accordion("Video and diffusion settings", open=True):
        with gr.Row():
            frames = gr.Slider(
                5,
                LIMITS.max_frames,
                value=VIDEO.frames,
                step=4,
                label="Frames (4k+1)",
                elem_id="frames",
            )
            fps = gr.Slider(
                8, 30, value=info.default_fps(), step=1, label="Frames per second", elem_id="fps"
            )
            size = gr.Dropdown(
                SIZES,
                value=info.default_size() if info.default_size() in SIZES else VIDEO.height,
                label="Size (px)",
                elem_id="size",
            )
        with gr.Row():
            steps = gr.Slider(
                LIMITS.min_steps,
                60,
                value=info.default_steps(),
                step=1,
                label="Steps",
                elem_id="steps",
                interactive=info.diffusion,
                info=note,
            )
            guidance = gr.Slider(
                LIMITS.min_guidance_scale,
                8.0,
                value=info.default_guidance(),
                interactive=info.diffusion,
                info=note,
                step=0.5,
                label="Guidance",
                elem_id="guidance",
            )
            seed = gr.Number(value=GENERATION.seed, precision=0, label="Seed")
            randomize = gr.Button("🎲", size="sm", min_width=40)
            fast = gr.Button(texts.FAST_BUTTON, size="sm")
        estimate = gr.Markdown(
            estimate_markdown(
                VIDEO.frames, VIDEO.height, info.default_steps(), info.default_guidance(), engine
            ),
            elem_id="estimate",
        )
    return SimpleNamespace(
        frames=frames,
        fps=fps,
        size=size,
        steps=steps,
        guidance=guidance,
        seed=seed,
        randomize=randomize,
        fast=fast,
        estimate=estimate,
    )


def _outputs_section(engine: str, loaded: bool) -> SimpleNamespace:
    """The engine choice, the preview, generate and cancel buttons with the run's status
    beside them, the result, then the preview's videos."""
    wan_animate = bool(engine_info(engine).preview_videos)  # its skeleton and face videos
    with gr.Column(elem_id="run-panel"):
        with gr.Row():
            engine_radio = gr.Radio(
                choices=[(name, name) for name in ENGINES],
                value=engine,
                label=texts.ENGINE_LABEL,
                elem_id="engine",
            )
            engine_text = gr.Markdown(texts.engine_markdown(engine), elem_id="engine-text")
        with gr.Row():
            preview_button = gr.Button("Preview conditions (CPU)", elem_id="preview-button")
            generate_button = gr.Button(
                "Generate" if loaded else texts.GENERATE_NO_MODEL,
                variant="primary",
                interactive=loaded,
                elem_id="generate-button",
            )
            cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-button")
        result_note = gr.Markdown(elem_id="run-status")
        preview_text = gr.Markdown(elem_id="preview-summary")
        # The result's labels sit above the players, never over them: a player's own label and
        # buttons float over the video's top corners, where each engine burns in what made it
        # (its banner must stay readable at every size, on a phone too).
        with gr.Row():
            with gr.Column(min_width=160):
                gr.Markdown(texts.RESULT_LABEL, elem_id="result-label")
                result_video = gr.Video(
                    show_label=False, buttons=[], elem_id="result-video", **PLAYS_ITSELF
                )
                result_download = gr.DownloadButton(
                    texts.DOWNLOAD_RESULT, visible=False, size="sm", elem_id="result-download"
                )
            with gr.Column(min_width=160):
                gr.Markdown(texts.SIDE_BY_SIDE_LABEL, elem_id="side-label")
                side_video = gr.Video(
                    show_label=False, buttons=[], elem_id="side-video", **PLAYS_ITSELF
                )
    with gr.Row():
        normals_video = gr.Video(
            label="Normal maps (head pose)", elem_id="normals-video", **PLAYS_ITSELF
        )
        rays_video = gr.Video(label="Ray maps (camera)", elem_id="rays-video", **PLAYS_ITSELF)
        tracking_video = gr.Video(label="Tracking", elem_id="tracking-video", **PLAYS_ITSELF)
    gr.Markdown(texts.RAYS_EXPLAINED, elem_id="rays-explained")
    # What drives wan-animate: shown only when that engine is chosen.
    with gr.Row():
        pose_video = gr.Video(
            label="Skeleton (wan-animate's pose video)",
            visible=wan_animate,
            elem_id="pose-video",
            **PLAYS_ITSELF,
        )
        face_video = gr.Video(
            label="Face crops (wan-animate's face video)",
            visible=wan_animate,
            elem_id="face-video",
            **PLAYS_ITSELF,
        )
    strip_video = gr.Video(
        label="Side by side: tracking | normals | rays", elem_id="strip-video", **PLAYS_ITSELF
    )
    return SimpleNamespace(
        engine=engine_radio,
        engine_text=engine_text,
        pose_video=pose_video,
        face_video=face_video,
        preview_button=preview_button,
        generate_button=generate_button,
        cancel_button=cancel_button,
        preview_text=preview_text,
        normals_video=normals_video,
        rays_video=rays_video,
        tracking_video=tracking_video,
        strip_video=strip_video,
        result_note=result_note,
        result_video=result_video,
        result_download=result_download,
        side_video=side_video,
    )


def _four_modes_section() -> SimpleNamespace:
    """The four modes side by side (a 2x2 grid) for the current inputs."""
    with gr.Accordion(texts.FOUR_MODES_BUTTON, open=False, elem_id="four-modes"):
        button = gr.Button(texts.FOUR_MODES_BUTTON, elem_id="four-modes-button")
        note = gr.Markdown(elem_id="four-modes-note")
        videos = []
        modes = list(Mode)
        for row in (modes[:2], modes[2:]):
            with gr.Row():
                videos += [
                    gr.Video(label=str(mode), elem_id=f"four-{mode}", **PLAYS_ITSELF)
                    for mode in row
                ]
    return SimpleNamespace(button=button, note=note, videos=videos)


# ------------------------------------------------------------------------------- wiring
def _wire(
    events: handlers.Handlers, examples, media, mode, camera, novel, settings, outputs, four
) -> None:
    """Every event of the page. Only preview and generate are public API endpoints."""
    uploads = [
        media.portrait.change(
            events.portrait_uploaded,
            media.portrait,
            [media.portrait, media.portrait_overlay, media.portrait_note],
            **PRIVATE,
        ),
        media.driving.change(
            events.driving_uploaded,
            media.driving,
            [media.driving, media.driving_overlay, media.driving_note],
            **PRIVATE,
        ),
    ]
    mode.mode.change(
        handlers.mode_changed, mode.mode, [camera.group, novel.group, mode.text], **PRIVATE
    )

    # The camera-path editor: every change rebuilds the 3D view, its thumbnail and the
    # trajectory JSON (marked invalid, with the reason, while the table is not valid).
    table = [camera.keyframes, camera.easing, camera.selected]
    table_outputs = [
        camera.plot,
        camera.trajectory_json,
        camera.error,
        camera.thumbnail,
        camera.preset,
    ]
    camera.preset.input(
        events.preset_chosen,
        camera.preset,
        [
            camera.keyframes,
            camera.easing,
            camera.plot,
            camera.trajectory_json,
            camera.error,
            camera.thumbnail,
            camera.selected,
        ],
        **PRIVATE,
    )
    camera.keyframes.input(events.table_edited, table, table_outputs, **PRIVATE)
    camera.easing.input(events.table_edited, table, table_outputs, **PRIVATE)
    camera.selected.input(
        handlers.keyframe_selected, table, [camera.plot, camera.thumbnail], **PRIVATE
    )
    camera.keyframes.select(
        handlers.keyframe_clicked,
        None,
        camera.selected,
        **PRIVATE,
    ).then(handlers.keyframe_selected, table, [camera.plot, camera.thumbnail], **PRIVATE)
    edited = [camera.keyframes, camera.selected, *table_outputs]
    camera.add.click(events.keyframe_added, table, edited, **PRIVATE)
    camera.remove.click(events.keyframe_removed, table, edited, **PRIVATE)
    camera.load.upload(
        events.path_loaded,
        camera.load,
        [
            camera.keyframes,
            camera.easing,
            camera.plot,
            camera.trajectory_json,
            camera.error,
            camera.thumbnail,
            camera.preset,
        ],
        **PRIVATE,
    )
    camera.save.click(events.path_saved, camera.trajectory_json, camera.saved, **PRIVATE)

    # Settings: the estimate follows the work asked for.
    work = [settings.frames, settings.size, settings.steps, settings.guidance]
    for control in (*work, outputs.engine):
        control.change(
            handlers.estimate_changed, [*work, outputs.engine], settings.estimate, **PRIVATE
        )
    settings.randomize.click(handlers.random_seed, None, settings.seed, **PRIVATE)
    settings.fast.click(handlers.fast_settings, None, work, **PRIVATE)

    # Honest state: a change to anything a preview or result depends on marks them.
    stale_outputs = [
        outputs.normals_video,
        outputs.rays_video,
        outputs.tracking_video,
        outputs.strip_video,
        outputs.preview_text,
        outputs.result_note,
        outputs.pose_video,
        outputs.face_video,
    ]
    watched = {
        "portrait": [media.portrait.upload, media.portrait.clear, media.portrait.input],
        "driving clip": [media.driving.upload, media.driving.clear],
        "mode": [mode.mode.input],
        "camera path": [
            camera.preset.input,
            camera.keyframes.input,
            camera.easing.input,
            camera.add.click,
            camera.remove.click,
            camera.load.upload,
        ],
        "view": [novel.azimuth.input, novel.elevation.input, novel.distance.input],
        "video settings": [settings.frames.input, settings.fps.input, settings.size.input],
        "engine": [outputs.engine.input],
    }
    for what, triggers in watched.items():
        gr.on(
            triggers,
            functools.partial(events.inputs_changed, what),
            None,
            stale_outputs,
            queue=False,
            show_progress="hidden",
            **PRIVATE,
        )

    # Preview (public), refreshed when a view or length slider is released.
    preview_inputs = [
        media.portrait,
        media.driving,
        mode.mode,
        camera.trajectory_json,
        novel.azimuth,
        novel.elevation,
        novel.distance,
        settings.frames,
        settings.fps,
        settings.size,
    ]
    # Once an upload is shown, it is tracked as the next Preview will track it, on the
    # service's own thread (off the queue; a Preview clicked meanwhile waits for that tracking
    # rather than doing it again). Not after an upload refused with an error: one error shown.
    for upload in uploads:
        upload.success(
            events.uploads_settled, preview_inputs, None, queue=False, show_progress="hidden",
            **PRIVATE,
        )  # fmt: skip
    # The engine comes last, so API calls without it keep working (its default is the page's).
    preview_call_inputs = [*preview_inputs, outputs.engine]
    preview_outputs = [
        outputs.normals_video,
        outputs.rays_video,
        outputs.tracking_video,
        outputs.strip_video,
        outputs.preview_text,
    ]
    # After a preview: wan-animate's videos, the summary marked if the inputs changed while it
    # was made, an old run error cleared; or the error in place of the summary. Gradio runs no
    # ``.then`` after an error, so the same handler follows ``.failure`` too.
    settled = [
        outputs.pose_video,
        outputs.face_video,
        *preview_outputs[:4],
        outputs.preview_text,
        outputs.result_note,
        outputs.generate_button,
    ]

    def after_preview(event):
        for follow in (event.then, event.failure):
            follow(events.preview_settled, preview_call_inputs, settled, **PRIVATE)

    after_preview(
        outputs.preview_button.click(
            events.preview,
            preview_call_inputs,
            preview_outputs,
            api_name="preview",
            concurrency_limit=2,
            concurrency_id="preview",
        )
    )
    for slider in (novel.azimuth, novel.elevation, novel.distance, settings.frames):
        after_preview(
            slider.release(
                events.preview,
                preview_call_inputs,
                preview_outputs,
                concurrency_limit=2,
                **PRIVATE,
                concurrency_id="preview",
                trigger_mode="always_last",
            )
        )
    outputs.engine.change(
        handlers.engine_changed,
        outputs.engine,
        [outputs.engine_text, outputs.pose_video, outputs.face_video],
        **PRIVATE,
    ).then(events.generate_button, outputs.engine, outputs.generate_button, **PRIVATE)
    # The sliders follow the engine chosen: its own defaults (a user's choice of engine, not a
    # value loaded with an example: .input, not .change).
    outputs.engine.input(
        handlers.engine_settings,
        outputs.engine,
        [settings.steps, settings.guidance, settings.fps, settings.size],
        **PRIVATE,
    )

    # Examples: the inputs, mode and camera set, then the (cached) preview.
    example_outputs = [
        media.portrait,
        media.driving,
        mode.mode,
        camera.preset,
        camera.keyframes,
        camera.easing,
        camera.plot,
        camera.trajectory_json,
        camera.error,
        camera.thumbnail,
        novel.azimuth,
        novel.elevation,
        novel.distance,
        camera.group,
        novel.group,
        mode.text,
    ]
    example_inputs = [
        mode.mode,
        camera.trajectory_json,
        novel.azimuth,
        novel.elevation,
        novel.distance,
        settings.frames,
        settings.fps,
        settings.size,
        outputs.engine,
    ]
    for example_mode, button in examples.items():
        example = button.click(
            functools.partial(events.example_chosen, example_mode),
            None,
            example_outputs,
            js=SCROLL_TO_MODE,
            **PRIVATE,
        ).then(
            events.example_preview,
            example_inputs,
            preview_outputs,
            concurrency_limit=2,
            concurrency_id="preview",
            **PRIVATE,
        )
        after_preview(example)

    four.button.click(
        events.four_modes,
        [
            media.portrait,
            media.driving,
            camera.trajectory_json,
            novel.azimuth,
            novel.elevation,
            novel.distance,
            settings.frames,
            settings.fps,
            settings.size,
            outputs.engine,
        ],
        [*four.videos, four.note],
        concurrency_limit=1,
        concurrency_id="preview",
        **PRIVATE,
    )

    # Generate (public): the button is disabled and the page shows the run's status beside
    # it (stage, step, time) until the result, an error or "Cancelled after step n".
    # A ZeroGPU Space lends a GPU only to the engines that need a model (the geometric engine
    # runs on the Space's CPU): Handlers.generate_where_it_runs picks.
    events.on_device = spaces.GPU(duration=events.gpu_seconds)(events.generate)
    generate = events.generate_where_it_runs
    run = outputs.generate_button.click(
        events.run_started,
        outputs.engine,
        [outputs.generate_button, outputs.result_note],
        js=SCROLL_TO_RUN,
        queue=False,
        **PRIVATE,
    ).then(
        generate,
        [*preview_inputs, settings.steps, settings.guidance, settings.seed, outputs.engine],
        [outputs.result_video, outputs.side_video, outputs.result_note],
        api_name="generate",
        concurrency_limit=1,
        concurrency_id="generate",
        show_progress="hidden",
    )
    # Generate comes back after any end: a result or a cancel (``.then``), an error
    # (``.failure``: Gradio runs no ``.then`` after one), or inputs refused before the run.
    run.then(
        events.run_finished,
        outputs.engine,
        [outputs.generate_button, outputs.result_download],
        **PRIVATE,
    )
    run.failure(
        events.run_failed,
        outputs.engine,
        [outputs.generate_button, outputs.result_note, outputs.result_download],
        **PRIVATE,
    )
    outputs.cancel_button.click(events.cancel, None, outputs.result_note, **PRIVATE)
