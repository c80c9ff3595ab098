"""Every event of the web page, connected: uploads tracked, the camera-path editor, the settings
following the mode and the engine, Preview and its settle step, the examples, the four modes,
Generate with its start, end, failure and Cancel. Only preview and generate are public API
endpoints; everything else is UI plumbing (``PRIVATE``). The layout is in blocks.py."""

from __future__ import annotations

import functools

import gradio as gr
import spaces

from . import controls, editor, handlers

PRIVATE = {"api_visibility": "private"}  # UI plumbing: not part of the public API
# An example brings the mode and its controls (camera editor or view sliders) into view: they
# are what makes one mode's example differ from another's.
SCROLL_TO_MODE = (
    "() => { document.getElementById('mode')?.scrollIntoView({block: 'start'}); return []; }"
)
# Generate and Preview bring the buttons, the run's status and the result into view.
SCROLL_TO_RUN = (
    "() => { document.getElementById('run-panel')?.scrollIntoView({block: 'start'}); return []; }"
)


def wire(
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
        controls.mode_changed, mode.mode, [camera.group, novel.group, mode.text], **PRIVATE
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
        editor.keyframe_selected, table, [camera.plot, camera.thumbnail], **PRIVATE
    )
    camera.keyframes.select(
        editor.keyframe_clicked,
        None,
        camera.selected,
        **PRIVATE,
    ).then(editor.keyframe_selected, table, [camera.plot, camera.thumbnail], **PRIVATE)
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
            controls.estimate_changed, [*work, outputs.engine], settings.estimate, **PRIVATE
        )
    settings.randomize.click(controls.random_seed, None, settings.seed, **PRIVATE)
    settings.fast.click(controls.fast_settings, None, work, **PRIVATE)

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
        controls.engine_changed,
        outputs.engine,
        [outputs.engine_text, outputs.pose_video, outputs.face_video],
        **PRIVATE,
    ).then(events.generate_button, outputs.engine, outputs.generate_button, **PRIVATE)
    # The sliders follow the engine chosen: its own defaults (a user's choice of engine, not a
    # value loaded with an example: .input, not .change).
    outputs.engine.input(
        controls.engine_settings,
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
