"""The Gradio Blocks page. Layout and wiring only: the work is in service.py and the package."""

from __future__ import annotations

import random

import gradio as gr
import spaces

from ..conditioning import ConditioningSettings
from ..config import LIMITS, VIDEO
from ..errors import InputError
from ..modes import Mode
from ..viewpoint import Trajectory, TrajectoryError, load_presets, trajectory_figure
from . import editor
from .service import FAST, Service, estimate_markdown, guardrails, zerogpu_duration

SIZES = [256, 384, 512, 768]
PRIVATE = {"api_visibility": "private"}  # UI plumbing: not part of the public API


def mode_markdown(selected: str) -> str:
    """All four modes, one line each, the chosen one in bold."""
    return "\n".join(
        f"- **{m}: {m.description}**" if m == selected else f"- {m}: {m.description}" for m in Mode
    )


def _user_error(exc: Exception) -> gr.Error:
    return gr.Error(str(exc), print_exception=False)


def _settings(mode, frames, fps, size, azimuth, elevation, distance) -> ConditioningSettings:
    return ConditioningSettings(
        mode=mode,
        frames=int(frames),
        fps=float(fps),
        height=int(size),
        width=int(size),
        novel_azimuth=float(azimuth),
        novel_elevation=float(elevation),
        novel_distance=float(distance),
    ).validated()


def _trajectory(mode: str, trajectory_json: str | None) -> Trajectory | None:
    if not Mode.parse(mode).moving_camera:
        return None
    if not trajectory_json:
        raise InputError("Choose a camera path (a preset or your keyframes).")
    return Trajectory.from_json(trajectory_json)


# ------------------------------------------------------------ camera-path editor handlers
def path_figure(trajectory: Trajectory):
    """The 3D view of a path, sampled at the default frame count and size."""
    K, c2w = trajectory.sample(VIDEO.frames).cameras(VIDEO.height, VIDEO.width)
    return trajectory_figure(K, c2w, VIDEO.height, VIDEO.width)


def preset_chosen(presets: dict[str, Trajectory], name: str):
    """A preset picked: (keyframe table, easing, 3D view, trajectory JSON, editor message)."""
    trajectory = presets[name]
    return (
        editor.table_from_trajectory(trajectory),
        trajectory.easing,
        path_figure(trajectory),
        trajectory.to_json(),
        "",
    )


def table_edited(rows, easing):
    """The table or easing edited: (3D view, trajectory JSON, editor message); on a bad table
    the view and JSON stay as they were and the message says what is wrong."""
    try:
        trajectory = editor.trajectory_from_table(rows, easing=easing)
    except TrajectoryError as exc:
        return gr.update(), gr.update(), f"⚠️ {exc}"
    return path_figure(trajectory), trajectory.to_json(), ""


def path_loaded(file):
    """A path file uploaded: (keyframe table, easing, 3D view, trajectory JSON); a bad file is
    a user error with the file's problem in words."""
    try:
        trajectory = Trajectory.from_file(file)
    except TrajectoryError as exc:
        raise _user_error(exc) from None
    return (
        editor.table_from_trajectory(trajectory),
        trajectory.easing,
        path_figure(trajectory),
        trajectory.to_json(),
    )


def path_saved(service: Service, trajectory_json: str):
    """Save path: the trajectory written to a fresh request folder, offered as a file."""
    try:
        trajectory = Trajectory.from_json(trajectory_json)
    except TrajectoryError as exc:
        raise _user_error(exc) from None
    path = service.request_dir() / f"{trajectory.name}.json"
    path.write_text(trajectory.to_json())
    return gr.update(value=str(path), visible=True)


def build_demo(service: Service) -> gr.Blocks:
    presets = load_presets()
    ranges = None
    if service.pipeline is not None:
        ranges = service.pipeline.transformer.config.trained_ranges

    # --------------------------------------------------------------------------- handlers
    def on_portrait(path):
        try:
            overlay, note = service.track_photo(path)
        except InputError as exc:
            return None, f"⚠️ {exc}"
        return overlay, note

    def on_driving(path):
        try:
            overlay, note = service.track_clip(path)
        except InputError as exc:
            return None, f"⚠️ {exc}"
        return overlay, note

    def on_mode(mode):
        mode = Mode.parse(mode)
        return (
            gr.update(visible=mode.moving_camera),
            gr.update(visible=mode.novel_view),
            mode_markdown(mode),
        )

    def on_preset(name):
        return preset_chosen(presets, name)

    def on_save(trajectory_json):
        return path_saved(service, trajectory_json)

    def on_estimate(frames, size, steps, guidance):
        return estimate_markdown(int(frames), int(size), int(steps), float(guidance))

    def preview(
        portrait, driving, mode, trajectory_json, azimuth, elevation, distance, frames, fps, size
    ):
        """Everything the model is conditioned on, as videos (CPU, seconds)."""
        try:
            settings = _settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = _trajectory(mode, trajectory_json)
            result = service.preview(portrait, driving, mode, trajectory, settings)
        except InputError as exc:
            raise _user_error(exc) from None
        paths = result["paths"]
        warnings = guardrails(result["conditioning"], trajectory, ranges)
        text = result["summary"] + "".join(f"\n\n⚠️ {w}" for w in warnings)
        return (
            str(paths["normals"]),
            str(paths["rays"]),
            str(paths["tracking"]),
            str(paths["strip"]),
            text,
        )

    def gpu_seconds(
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
        request=None,
        progress=None,
    ):
        return zerogpu_duration(int(frames), int(steps))

    @spaces.GPU(duration=gpu_seconds)
    def generate(
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
        request: gr.Request = None,
        progress=gr.Progress(),  # noqa: B008 (gradio injects progress this way)
    ):
        """Conditioning, then diffusion; returns the mp4 (with the driving audio when it has
        one) and a side-by-side (driving | normals | result)."""
        try:
            settings = _settings(mode, frames, fps, size, azimuth, elevation, distance)
            trajectory = _trajectory(mode, trajectory_json)
            session = request.session_hash if request is not None else ""
            result = service.generate(
                portrait,
                driving,
                mode,
                trajectory,
                settings,
                steps=int(steps),
                guidance=float(guidance),
                seed=int(seed),
                session=session,
                progress=lambda done, total: progress((done, total), desc="denoising"),
            )
        except InputError as exc:
            raise _user_error(exc) from None
        note = service.status_markdown()
        return str(result["video"]), str(result["side_by_side"]), note

    def cancel(request: gr.Request):
        service.cancel_event(request.session_hash).set()
        return "Cancelling at the next step…"

    # ----------------------------------------------------------------------------- layout
    first_preset = "orbit" if "orbit" in presets else next(iter(presets))
    with gr.Blocks(title="FactorPortrait", delete_cache=(1800, 3600)) as demo:
        gr.Markdown(
            "# FactorPortrait\nOne photo + a driving video + a camera path → a video of "
            "that person with the video's expressions and head motion, filmed along "
            "the path."
        )
        gr.Markdown(service.status_markdown(), elem_id="status")
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
        gr.Markdown(
            f"Photos: JPEG, PNG, WebP or AVIF, up to {LIMITS.max_image_bytes // 2**20} MB and "
            f"{LIMITS.max_image_pixels // 1_000_000} megapixels. Videos: up to "
            f"{LIMITS.max_video_bytes // 2**20} MB and {LIMITS.max_video_seconds:.0f} s. "
            f"Output: up to {LIMITS.max_frames} frames, sides up to {LIMITS.max_side} px."
        )
        gr.Examples(
            examples=[["assets/example_portrait.jpg", "assets/example_driving.mp4"]],
            inputs=[portrait, driving],
            cache_examples=False,
            label="Example (public-domain photo; clip made by this project)",
        )

        mode = gr.Radio(
            choices=[(m.value, m.value) for m in Mode],
            value=Mode.FRONTAL_DYNAMIC.value,
            label="Mode",
            elem_id="mode",
        )
        mode_text = gr.Markdown(mode_markdown(Mode.FRONTAL_DYNAMIC))

        with gr.Group(visible=False) as camera_group:
            gr.Markdown("### Camera path")
            with gr.Row():
                preset = gr.Dropdown(list(presets), value=first_preset, label="Preset")
                easing = gr.Radio(
                    ["linear", "ease-in-out"], value=presets[first_preset].easing, label="Easing"
                )
            keyframes = gr.Dataframe(
                value=editor.table_from_trajectory(presets[first_preset]),
                headers=editor.COLUMNS,
                datatype="number",
                interactive=True,
                label="Keyframes (t 0→1; azimuth, elevation, roll in degrees from the photo's "
                "view; distance as a factor; fov in degrees)",
            )
            with gr.Row():
                add = gr.Button("Add keyframe", size="sm")
                remove = gr.Button("Remove last keyframe", size="sm")
                load = gr.UploadButton("Load path (.json)", file_types=[".json"], size="sm")
                save = gr.Button("Save path", size="sm")
            saved = gr.File(label="Saved path", visible=False, interactive=False)
            editor_error = gr.Markdown()
            plot = gr.Plot(value=path_figure(presets[first_preset]), label="Path around the head")
        trajectory_json = gr.Textbox(
            value=presets[first_preset].to_json(), visible=False, label="Trajectory JSON"
        )

        with gr.Group(visible=False) as novel_group:
            gr.Markdown("### Novel view")
            with gr.Row():
                azimuth = gr.Slider(-60, 60, value=30, step=1, label="Azimuth (°)")
                elevation = gr.Slider(-30, 30, value=0, step=1, label="Elevation (°)")
                distance = gr.Slider(0.6, 1.6, value=1.0, step=0.05, label="Distance (×)")

        with gr.Accordion("Video and diffusion settings", open=True):
            with gr.Row():
                frames = gr.Slider(
                    5, LIMITS.max_frames, value=VIDEO.frames, step=4, label="Frames (4k+1)"
                )
                fps = gr.Slider(8, 30, value=VIDEO.fps, step=1, label="Frames per second")
                size = gr.Dropdown(SIZES, value=VIDEO.height, label="Size (px)")
            with gr.Row():
                steps = gr.Slider(1, 60, value=30, step=1, label="Steps")
                guidance = gr.Slider(1.0, 8.0, value=3.0, step=0.5, label="Guidance")
                seed = gr.Number(value=0, precision=0, label="Seed")
                randomize = gr.Button("🎲", size="sm", min_width=40)
                fast = gr.Button("Fast (fits a free ZeroGPU call)", size="sm")
            estimate = gr.Markdown(estimate_markdown(VIDEO.frames, VIDEO.height, 30, 3.0))

        with gr.Row():
            preview_button = gr.Button("Preview conditions (CPU)", elem_id="preview-button")
            generate_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
            cancel_button = gr.Button("Cancel", variant="stop")
        preview_text = gr.Markdown(elem_id="preview-summary")
        with gr.Row():
            normals_video = gr.Video(label="Normal maps (head pose)", elem_id="normals-video")
            rays_video = gr.Video(label="Ray maps (camera)")
            tracking_video = gr.Video(label="Tracking")
        strip_video = gr.Video(label="Side by side: tracking | normals | rays")
        result_note = gr.Markdown()
        with gr.Row():
            result_video = gr.Video(label="Result", elem_id="result-video")
            side_video = gr.Video(label="Driving | normals | result")

        # ----------------------------------------------------------------------- wiring
        portrait.change(on_portrait, portrait, [portrait_overlay, portrait_note], **PRIVATE)
        driving.change(on_driving, driving, [driving_overlay, driving_note], **PRIVATE)
        mode.change(on_mode, mode, [camera_group, novel_group, mode_text], **PRIVATE)
        table_outputs = [plot, trajectory_json, editor_error]
        preset.change(on_preset, preset, [keyframes, easing, *table_outputs], **PRIVATE)
        keyframes.input(table_edited, [keyframes, easing], table_outputs, **PRIVATE)
        easing.input(table_edited, [keyframes, easing], table_outputs, **PRIVATE)
        add.click(editor.add_keyframe, keyframes, keyframes, **PRIVATE).then(
            table_edited, [keyframes, easing], table_outputs, **PRIVATE
        )
        remove.click(editor.remove_keyframe, keyframes, keyframes, **PRIVATE).then(
            table_edited, [keyframes, easing], table_outputs, **PRIVATE
        )
        load.upload(path_loaded, load, [keyframes, easing, plot, trajectory_json], **PRIVATE)
        save.click(on_save, trajectory_json, saved, **PRIVATE)
        for control in (frames, size, steps, guidance):
            control.change(on_estimate, [frames, size, steps, guidance], estimate, **PRIVATE)
        randomize.click(lambda: random.randint(0, 2**31 - 1), None, seed, **PRIVATE)
        fast.click(
            lambda: (FAST["frames"], FAST["size"], FAST["steps"], FAST["guidance"]),
            None,
            [frames, size, steps, guidance],
            **PRIVATE,
        )

        preview_inputs = [
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
        ]
        preview_outputs = [normals_video, rays_video, tracking_video, strip_video, preview_text]
        preview_button.click(
            preview,
            preview_inputs,
            preview_outputs,
            api_name="preview",
            concurrency_limit=2,
            concurrency_id="preview",
        )
        for slider in (azimuth, elevation, distance, frames):  # refresh on release
            slider.release(
                preview,
                preview_inputs,
                preview_outputs,
                concurrency_limit=2,
                **PRIVATE,
                concurrency_id="preview",
                trigger_mode="always_last",
            )
        generate_event = generate_button.click(
            generate,
            [*preview_inputs, steps, guidance, seed],
            [result_video, side_video, result_note],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="generate",
        )
        cancel_button.click(
            cancel, None, result_note, cancels=[generate_event], queue=False, **PRIVATE
        )
    return demo
