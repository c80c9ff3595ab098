"""The Gradio Blocks page: the layout, section by section, and its wiring. The handlers are in
handlers.py, the words in texts.py, the work in service.py and the package."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import spaces

from ..config import GENERATION, LIMITS, VIDEO
from ..modes import Mode
from ..viewpoint import Trajectory, load_presets
from ..wan_animate.engine import ENGINES
from . import editor, handlers, texts
from .service import Service, estimate_markdown

SIZES = [256, 384, 512, 768]
PRIVATE = {"api_visibility": "private"}  # UI plumbing: not part of the public API
DEFAULT_PRESET = "orbit"


def build_demo(service: Service) -> gr.Blocks:
    presets = load_presets()
    events = handlers.Handlers(service, presets)
    with gr.Blocks(title=texts.TITLE, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(texts.INTRO)
        gr.Markdown(service.status_markdown(), elem_id="status")
        gr.Markdown(service.wan_animate_status_markdown(), elem_id="engine-status")
        media = _media_section()
        mode = _mode_section()
        camera = _camera_path_section(presets)
        novel = _novel_view_section()
        settings = _settings_section(service.engine)
        outputs = _outputs_section(service.engine)
        _wire(events, media, mode, camera, novel, settings, outputs)
    return demo


# ------------------------------------------------------------------------------- layout
def _media_section() -> SimpleNamespace:
    """The portrait and driving uploads, each with its tracking check, and the example."""
    with gr.Row():
        with gr.Column():
            portrait = gr.Image(
                label="Portrait photo",
                type="filepath",
                sources=["upload", "webcam"],
                elem_id="portrait",
            )
            portrait_note = gr.Markdown(elem_id="portrait-note")
            portrait_overlay = gr.Image(label="Tracked face", interactive=False, height=220)
        with gr.Column():
            driving = gr.Video(
                label="Driving video", sources=["upload", "webcam"], elem_id="driving"
            )
            driving_note = gr.Markdown(elem_id="driving-note")
            driving_overlay = gr.Image(
                label="Tracked face (first frame)", interactive=False, height=220
            )
    gr.Markdown(texts.MEDIA_LIMITS)
    gr.Examples(
        examples=[["assets/example_portrait.jpg", "assets/example_driving.mp4"]],
        inputs=[portrait, driving],
        cache_examples=False,
        label=texts.EXAMPLE_LABEL,
    )
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
            preset = gr.Dropdown(list(presets), value=first, label="Preset")
            easing = gr.Radio(
                ["linear", "ease-in-out"], value=presets[first].easing, label="Easing"
            )
        keyframes = gr.Dataframe(
            value=editor.table_from_trajectory(presets[first]),
            headers=editor.COLUMNS,
            datatype="number",
            interactive=True,
            label=texts.KEYFRAMES_LABEL,
        )
        with gr.Row():
            add = gr.Button("Add keyframe", size="sm")
            remove = gr.Button("Remove last keyframe", size="sm")
            load = gr.UploadButton("Load path (.json)", file_types=[".json"], size="sm")
            save = gr.Button("Save path", size="sm")
        saved = gr.File(label="Saved path", visible=False, interactive=False)
        error = gr.Markdown()
        plot = gr.Plot(value=handlers.path_figure(presets[first]), label="Path around the head")
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
    with gr.Accordion("Video and diffusion settings", open=True):
        with gr.Row():
            frames = gr.Slider(
                5, LIMITS.max_frames, value=VIDEO.frames, step=4, label="Frames (4k+1)"
            )
            fps = gr.Slider(8, 30, value=VIDEO.fps, step=1, label="Frames per second")
            size = gr.Dropdown(SIZES, value=VIDEO.height, label="Size (px)")
        with gr.Row():
            steps = gr.Slider(LIMITS.min_steps, 60, value=GENERATION.steps, step=1, label="Steps")
            guidance = gr.Slider(
                LIMITS.min_guidance_scale,
                8.0,
                value=GENERATION.guidance_scale,
                step=0.5,
                label="Guidance",
            )
            seed = gr.Number(value=GENERATION.seed, precision=0, label="Seed")
            randomize = gr.Button("🎲", size="sm", min_width=40)
            fast = gr.Button(texts.FAST_BUTTON, size="sm")
        estimate = gr.Markdown(
            estimate_markdown(VIDEO.frames, VIDEO.height, 30, 3.0, engine), elem_id="estimate"
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


def _outputs_section(engine: str) -> SimpleNamespace:
    """The engine choice, the preview, generate and cancel buttons and what they show."""
    wan_animate = engine == ENGINES[1]
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
        generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        cancel_button = gr.Button("Cancel", variant="stop")
    preview_text = gr.Markdown(elem_id="preview-summary")
    with gr.Row():
        normals_video = gr.Video(label="Normal maps (head pose)", elem_id="normals-video")
        rays_video = gr.Video(label="Ray maps (camera)")
        tracking_video = gr.Video(label="Tracking")
    # What drives wan-animate: shown only when that engine is chosen.
    with gr.Row():
        pose_video = gr.Video(
            label="Skeleton (wan-animate's pose video)", visible=wan_animate, elem_id="pose-video"
        )
        face_video = gr.Video(
            label="Face crops (wan-animate's face video)", visible=wan_animate, elem_id="face-video"
        )
    strip_video = gr.Video(label="Side by side: tracking | normals | rays")
    result_note = gr.Markdown()
    with gr.Row():
        result_video = gr.Video(label="Result", elem_id="result-video")
        side_video = gr.Video(label="Driving | normals | result")
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
        side_video=side_video,
    )


# ------------------------------------------------------------------------------- wiring
def _wire(events: handlers.Handlers, media, mode, camera, novel, settings, outputs) -> None:
    """Every event of the page. Only preview and generate are public API endpoints."""
    media.portrait.change(
        events.portrait_uploaded,
        media.portrait,
        [media.portrait_overlay, media.portrait_note],
        **PRIVATE,
    )
    media.driving.change(
        events.driving_uploaded,
        media.driving,
        [media.driving_overlay, media.driving_note],
        **PRIVATE,
    )
    mode.mode.change(
        handlers.mode_changed, mode.mode, [camera.group, novel.group, mode.text], **PRIVATE
    )

    # The camera-path editor: every change rebuilds the 3D view and the trajectory JSON.
    table = [camera.keyframes, camera.easing]
    table_outputs = [camera.plot, camera.trajectory_json, camera.error]
    camera.preset.change(
        events.preset_chosen,
        camera.preset,
        [camera.keyframes, camera.easing, *table_outputs],
        **PRIVATE,
    )
    camera.keyframes.input(handlers.table_edited, table, table_outputs, **PRIVATE)
    camera.easing.input(handlers.table_edited, table, table_outputs, **PRIVATE)
    camera.add.click(editor.add_keyframe, camera.keyframes, camera.keyframes, **PRIVATE).then(
        handlers.table_edited, table, table_outputs, **PRIVATE
    )
    camera.remove.click(editor.remove_keyframe, camera.keyframes, camera.keyframes, **PRIVATE).then(
        handlers.table_edited, table, table_outputs, **PRIVATE
    )
    camera.load.upload(
        handlers.path_loaded,
        camera.load,
        [camera.keyframes, camera.easing, camera.plot, camera.trajectory_json],
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
    # The engine comes last, so API calls without it keep working (its default is the page's).
    preview_call_inputs = [*preview_inputs, outputs.engine]
    preview_outputs = [
        outputs.normals_video,
        outputs.rays_video,
        outputs.tracking_video,
        outputs.strip_video,
        outputs.preview_text,
    ]
    engine_videos = [outputs.pose_video, outputs.face_video]
    outputs.preview_button.click(
        events.preview,
        preview_call_inputs,
        preview_outputs,
        api_name="preview",
        concurrency_limit=2,
        concurrency_id="preview",
    ).then(events.engine_videos, None, engine_videos, **PRIVATE)
    for slider in (novel.azimuth, novel.elevation, novel.distance, settings.frames):
        slider.release(
            events.preview,
            preview_call_inputs,
            preview_outputs,
            concurrency_limit=2,
            **PRIVATE,
            concurrency_id="preview",
            trigger_mode="always_last",
        ).then(events.engine_videos, None, engine_videos, **PRIVATE)
    outputs.engine.change(
        handlers.engine_changed, outputs.engine, [outputs.engine_text, *engine_videos], **PRIVATE
    )

    # Generate (public) and its cancel.
    generate = spaces.GPU(duration=events.gpu_seconds)(events.generate)
    generate_event = outputs.generate_button.click(
        generate,
        [*preview_inputs, settings.steps, settings.guidance, settings.seed, outputs.engine],
        [outputs.result_video, outputs.side_video, outputs.result_note],
        api_name="generate",
        concurrency_limit=1,
        concurrency_id="generate",
    )
    outputs.cancel_button.click(
        events.cancel, None, outputs.result_note, cancels=[generate_event], queue=False, **PRIVATE
    )
