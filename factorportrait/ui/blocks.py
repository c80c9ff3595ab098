"""The Gradio Blocks page's layout, section by section (examples, media, mode, camera path,
novel view, settings, engine and outputs, the four modes), and the page's own CSS and
JavaScript. Its events are connected in wiring.py; the handlers are in handlers.py (and
controls, editor, run_handlers), the words in texts.py, the work in service.py."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ..config import GENERATION, LIMITS, VIDEO
from ..engines import ENGINES, engine_info
from ..modes import Mode
from ..viewpoint import Trajectory, load_presets
from . import controls, editor, handlers, texts
from .estimates import estimate_markdown
from .service import Service
from .uploads import checked_image, checked_video
from .wiring import wire

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
DEFAULT_PRESET = controls.DEFAULT_PRESET
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
        wire(events, examples, media, mode, camera, novel, settings, outputs, four)
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
                value=editor.path_figure(presets[first]),
                label="Path around the template head",
                scale=3,
                elem_id="path-view",
            )
            thumbnail = gr.Image(
                value=editor.path_thumbnail(presets[first]),
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
    defaults (they follow the engine chosen: ``controls.engine_settings``)."""
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
