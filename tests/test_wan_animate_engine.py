"""The `wan-animate` engine: a tiny random Wan2.2-Animate folder in diffusers' own layout, videos
for every mode through the CLI, the banner that says which model made them, the preview's
skeleton and face-crop videos, segments for long clips and the cached prompt."""

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from factorportrait.cli import main
from factorportrait.engines.wan_animate import engine, loading, windows
from factorportrait.errors import InputError
from factorportrait.io.media import read_video
from factorportrait.modes import MODES

ASSETS = Path(__file__).resolve().parent.parent / "assets"
FRAMES, SIZE = 9, 64


def _inputs(mode, landmarker_path):
    return ["--portrait", str(ASSETS / "example_portrait.jpg"),
            "--driving", str(ASSETS / "example_driving.mp4"), "--mode", str(mode),
            "--frames", str(FRAMES), "--size", str(SIZE),
            "--landmarker", str(landmarker_path)]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """One tiny random Wan-Animate folder for the module, written by the CLI."""
    path = tmp_path_factory.mktemp("wan") / "tiny wan animate"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["make-tiny-checkpoint", "--engine", "wan-animate", str(path)]) == 0
    assert "RANDOM" in printed.getvalue() and "WanAnimatePipeline" in printed.getvalue()
    return path


def test_the_tiny_folder_is_diffusers_own_wan_animate_layout(tiny_checkpoint):
    from diffusers import WanAnimatePipeline
    from diffusers.models import WanAnimateTransformer3DModel

    pipeline = WanAnimatePipeline.from_pretrained(str(tiny_checkpoint), use_safetensors=True)
    assert isinstance(pipeline.transformer, WanAnimateTransformer3DModel)
    index = json.loads((tiny_checkpoint / "model_index.json").read_text())
    assert index["_class_name"] == "WanAnimatePipeline"
    # The seven components the pipeline cannot do without, each saved.
    for name in ("tokenizer", "text_encoder", "vae", "scheduler", "image_processor",
                 "image_encoder", "transformer"):  # fmt: skip
        assert (tiny_checkpoint / name).is_dir(), name
    assert not list(tiny_checkpoint.rglob("*.bin")) and list(tiny_checkpoint.rglob("*.safetensors"))
    # Our loader reads the marker back: the engine knows it is the tiny random one.
    assert loading.is_tiny_random(loading.load_wan_animate(tiny_checkpoint, "cpu"))


def test_loading_a_missing_folder_or_a_non_pipeline_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        loading.load_wan_animate(tmp_path / "nothing here", "cpu")
    with pytest.raises(InputError, match="no model_index.json"):
        loading.load_wan_animate(tmp_path, "cpu")
    from factorportrait.pipelines.checkpoints import make_tiny_checkpoint

    factorportrait_folder = make_tiny_checkpoint(tmp_path / "factorportrait")
    with pytest.raises(InputError, match="not a WanAnimatePipeline.*--engine factorportrait"):
        loading.load_wan_animate(factorportrait_folder, "cpu")


@pytest.mark.parametrize("mode", MODES)
def test_generate_writes_a_labelled_video_for_every_mode(
    mode, tiny_checkpoint, landmarker_path, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "wan.mp4"
    args = ["generate", "--checkpoint", str(tiny_checkpoint), *_inputs(mode, landmarker_path),
            "--steps", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip
    monkeypatch.delenv(loading.ENGINE_VARIABLE, raising=False)
    if mode == "camera-only":  # the engine from the environment, as a Space sets it
        monkeypatch.setenv(loading.ENGINE_VARIABLE, "wan-animate")
    else:
        args += ["--engine", "wan-animate"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "engine: wan-animate" in printed and "not FactorPortrait" in printed
    assert "tiny RANDOM" in printed
    video = read_video(out).frames
    assert video.shape == (FRAMES, SIZE, SIZE, 3)
    # The banner: the top band darkened to a quarter in every frame (the text is a few pixels).
    band = max(12, SIZE // 14)
    for frame in video.astype(float):
        assert np.median(frame[:band]) < 0.5 * np.median(frame[band + 4 :]) + 2


def test_the_banner_says_public_model_and_tiny_random():
    grey = np.full((2, 64, 480, 3), 200, np.uint8)
    for tiny in (False, True):
        labelled = engine.label_wan_animate(grey, tiny_random=tiny)
        band = max(12, 64 // 14)
        assert np.array_equal(labelled[:, band:], grey[:, band:])  # only the band changes
        text = np.any(labelled[:, :band] != 50, axis=-1)  # 200 * 0.25 = 50 where no text is
        assert 0.01 < text.mean() < 0.6
        assert text[..., -4:].sum() == 0  # the words fit the frame
    public = engine.banner_text(480, tiny_random=False)
    assert "PUBLIC MODEL" in public and "NOT FactorPortrait" in public
    assert "TINY RANDOM" in engine.banner_text(480, tiny_random=True)
    for width in (64, 256):
        assert "PUBLIC" in engine.banner_text(width, tiny_random=False)
        assert "TINY RANDOM" in engine.banner_text(width, tiny_random=True)
        assert "not FactorPortrait" in engine.banner_text(width, tiny_random=False)
    narrow = engine.label_wan_animate(grey[:, :, :64], tiny_random=True)
    assert np.any(narrow[:, :band] != 50, axis=-1)[..., -2:].sum() == 0


def test_preview_writes_the_pose_and_face_videos(landmarker_path, tmp_path):
    out = tmp_path / "preview"
    args = ["preview", *_inputs("all-dynamic", landmarker_path), "--engine", "wan-animate"]
    assert main([*args, "--out", str(out)]) == 0
    assert read_video(out / "pose.mp4").frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert read_video(out / "face.mp4").frames.shape == (FRAMES, 512, 512, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert {"pose.mp4", "face.mp4"} <= set(summary["files"])


def test_segment_plan_follows_the_pipelines_segments():
    # Always whole 77-frame windows (Wan's get_valid_len, diffusers' padding): a short clip is
    # one full window, padded and trimmed, and the note says so.
    plan = engine.segment_plan(9)
    assert {k: plan[k] for k in ("segment_frame_length", "segments", "padded")} == {
        "segment_frame_length": 77,
        "segments": 1,
        "padded": 77,
    }
    assert "one 77-frame window" in plan["note"] and "trimmed back to 9" in plan["note"]
    assert engine.segment_plan(77)["segments"] == 1 and engine.segment_plan(77)["note"] is None
    # 10 s at 16 fps: 161 frames; each segment after the first adds 77 - 1 = 76 new frames, so
    # 1 + 76 * 3 = 229 >= 161 > 1 + 76 * 2 = 153: three segments.
    plan = engine.segment_plan(161)
    assert plan["segment_frame_length"] == 77 and plan["segments"] == 3
    assert "229" in plan["note"] and "161" in plan["note"]


def test_several_segments_give_exactly_the_requested_frames_and_encode_the_prompt_once(
    monkeypatch,
):
    pipeline = loading.tiny_wan_animate_pipeline(seed=3)
    frames = 9
    rng = np.random.default_rng(0)
    motion_size = pipeline.transformer.config.motion_encoder_size
    videos = (
        rng.integers(0, 256, (frames, SIZE, SIZE, 3), dtype=np.uint8),
        rng.integers(0, 256, (frames, motion_size, motion_size, 3), dtype=np.uint8),
    )
    monkeypatch.setattr(engine, "driving_videos", lambda cond, face_size: videos)
    # Segments of 5 frames carrying 1: 9 frames need (9 - 1) / 4 = 2 segments.
    monkeypatch.setattr(windows, "SEGMENT_FRAMES", 5)
    assert engine.segment_plan(frames)["segments"] == 2
    calls = []
    pipeline.text_encoder.register_forward_hook(lambda *_: calls.append(1))
    cond = SimpleNamespace(
        reference=np.full((SIZE, SIZE, 3), 128, np.uint8), frames=frames, height=SIZE, width=SIZE
    )
    steps_seen = []

    def count_steps(pipe, step, timestep, kwargs):
        steps_seen.append(step)
        return {}

    video = engine.generate_wan_animate(
        pipeline, cond, steps=1, guidance=1.0, seed=0, callback=count_steps
    )
    assert video.shape == (frames, SIZE, SIZE, 3) and video.dtype == np.uint8
    assert steps_seen == [0, 0]  # one step in each of the two segments
    engine.generate_wan_animate(pipeline, cond, steps=1, guidance=1.0, seed=1)
    assert len(calls) == 1  # the prompt was encoded once and reused


def _tiny_lora(path: Path, transformer, rank: int = 2, alpha: float = 4.0) -> dict:
    """A LoRA on the tiny transformer's attention projections, saved by diffusers' own LoRA
    writer (the layout its loader reads); returns the saved tensors."""
    import torch
    from diffusers import WanAnimatePipeline
    from peft import LoraConfig, get_peft_model_state_dict

    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=["to_q", "to_v"], init_lora_weights=False
    )
    transformer.add_adapter(config)
    layers = {k: v.detach().clone() for k, v in get_peft_model_state_dict(transformer).items()}
    # The metadata carries alpha: without it a loader must assume alpha = r.
    WanAnimatePipeline.save_lora_weights(
        path,
        transformer_lora_layers=layers,
        transformer_lora_adapter_metadata=config.to_dict(),
        safe_serialization=True,
    )
    return {k: v.to(torch.float32) for k, v in layers.items()}


def test_a_distillation_lora_loads_through_diffusers_and_changes_the_weights_by_its_product(
    tiny_checkpoint, tmp_path
):
    """Known answer: once fused, each targeted weight moved by scale * (alpha / r) * B @ A."""
    import torch

    rank, alpha, scale = 2, 4.0, 0.5
    layers = _tiny_lora(tmp_path / "lora", loading.tiny_wan_animate_pipeline(seed=5).transformer)
    base = loading.load_wan_animate(tiny_checkpoint, "cpu")
    loaded = loading.load_wan_animate(
        tiny_checkpoint, "cpu", lora=str(tmp_path / "lora"), lora_scale=scale
    )
    assert loaded.factorportrait_lora == str(tmp_path / "lora")
    loaded.fuse_lora(lora_scale=1.0)  # the adapter's own scale (set_adapters) applies too
    name = next(k for k in layers if "to_q" in k and "lora_A" in k)
    module = name.removeprefix("transformer.").split(".lora_A")[0]
    lora_a, lora_b = layers[name], layers[name.replace("lora_A", "lora_B")]
    expected = scale * (alpha / rank) * lora_b @ lora_a
    before = dict(base.transformer.named_modules())[module].weight
    after = dict(loaded.transformer.named_modules())[module].weight
    torch.testing.assert_close(after - before, expected, atol=1e-5, rtol=1e-4)


def test_a_missing_lora_or_an_unknown_offload_is_a_clear_error(tiny_checkpoint, tmp_path):
    with pytest.raises(InputError, match="lora .*no such file"):
        loading.load_wan_animate(tiny_checkpoint, "cpu", lora=str(tmp_path / "none.safetensors"))
    with pytest.raises(InputError, match="offload"):
        loading.load_wan_animate(tiny_checkpoint, "cpu", offload="disk")


def test_without_a_factorportrait_checkpoint_a_gpu_gets_the_public_engine_and_a_cpu_gets_none(
    monkeypatch,
):
    monkeypatch.delenv(loading.ENGINE_VARIABLE, raising=False)
    on_gpu = loading.startup_plan(None, None, None, cuda=True)
    assert on_gpu.wan_animate_checkpoint == loading.HUB_ID and on_gpu.engine == "wan-animate"
    assert "none is public" in on_gpu.note
    on_cpu = loading.startup_plan(None, None, None, cuda=False)
    assert on_cpu.wan_animate_checkpoint is None and on_cpu.note is None
    # A FactorPortrait checkpoint keeps its engine; a wan-animate folder alone is chosen.
    assert loading.startup_plan("ckpt", None, None, cuda=True).wan_animate_checkpoint is None
    assert loading.startup_plan("ckpt", None, None, cuda=True).engine == "factorportrait"
    assert loading.startup_plan(None, "folder", None, cuda=False).engine == "wan-animate"
    # What the user says wins, by argument or environment; a wrong name is refused.
    assert loading.startup_plan(None, None, "factorportrait", cuda=True).engine == "factorportrait"
    monkeypatch.setenv(loading.ENGINE_VARIABLE, "factorportrait")
    assert loading.startup_plan(None, "folder", None, cuda=True).engine == "factorportrait"
    with pytest.raises(InputError, match="engine"):
        loading.startup_plan(None, None, "wan", cuda=True)


def test_offloading_follows_the_cards_memory():
    # In bf16: a 32 GiB transformer + 13 GiB of other weights + activations.
    assert loading.auto_offload(None) == "none"  # no CUDA GPU
    assert loading.auto_offload(139.8) == "none"  # H200
    assert loading.auto_offload(79.2) == "none"  # H100 80GB, as CUDA reports it
    assert loading.auto_offload(64) == "model"  # the transformer fits alone
    assert loading.auto_offload(44.4) == "group"  # a 48 GB card: it does not
    assert loading.auto_offload(22.1) == "group"


@pytest.fixture(scope="module")
def tiny_pipeline():
    return loading.tiny_wan_animate_pipeline(seed=1)


@pytest.mark.parametrize("mode", MODES)
def test_the_python_api_makes_the_requested_video_in_every_mode(
    mode, tiny_pipeline, landmarker_path
):
    """build_conditioning -> generate_wan_animate: the frames, size and banner asked for."""
    from factorportrait.conditioning import ConditioningSettings, build_conditioning

    cond = build_conditioning(
        ASSETS / "example_portrait.jpg",
        None if mode == "camera-only" else ASSETS / "example_driving.mp4",
        settings=ConditioningSettings(mode=str(mode), frames=5, height=48, width=32),
        landmarker_path=str(landmarker_path),
    )
    video = engine.generate_wan_animate(tiny_pipeline, cond, steps=1, guidance=1.0, seed=0)
    assert video.shape == (5, 48, 32, 3) and video.dtype == np.uint8
    band = max(12, 48 // 14)
    assert np.median(video[:, :band]) < 0.5 * np.median(video[:, band + 4 :]) + 2


def _latent_frames_seen(pipeline) -> list[int]:
    """The latent frames of every transformer call (the window's, plus the reference's)."""
    seen = []
    pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["hidden_states"].shape[2]),
        with_kwargs=True,
    )
    return seen


def test_a_49_frame_request_runs_one_77_frame_window_and_returns_49_frames(monkeypatch):
    """As Wan's generate and diffusers make it: the driving videos padded to one full window
    of 77 frames (20 latent frames, plus the reference's), the output trimmed to 49."""
    pipeline = loading.tiny_wan_animate_pipeline(seed=2)
    frames, size = 49, 32
    rng = np.random.default_rng(1)
    motion_size = pipeline.transformer.config.motion_encoder_size
    videos = (
        rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8),
        rng.integers(0, 256, (frames, motion_size, motion_size, 3), dtype=np.uint8),
    )
    monkeypatch.setattr(engine, "driving_videos", lambda cond, face_size: videos)
    seen = _latent_frames_seen(pipeline)
    cond = SimpleNamespace(
        reference=np.full((size, size, 3), 128, np.uint8), frames=frames, height=size, width=size
    )
    video = engine.generate_wan_animate(pipeline, cond, steps=1, guidance=1.0, seed=0)
    assert video.shape == (frames, size, size, 3)
    assert seen == [(77 - 1) // 4 + 1 + 1]  # one step of one 77-frame window


@pytest.mark.parametrize("frames", [1, 0, 3, 10])
def test_frame_counts_the_pipeline_cannot_take_are_refused_in_one_sentence(frames):
    from factorportrait.conditioning import ConditioningSettings

    with pytest.raises(InputError) as refused:
        engine.segment_plan(frames)
    message = str(refused.value)
    assert message.startswith("frames: wan-animate") and message.endswith(".")
    assert message.count(". ") == 0 and "\n" not in message  # one sentence
    # The request itself is refused, before any conditioning or model (the service and the
    # command line check it first).
    if frames >= 1:
        with pytest.raises(InputError, match="frames: wan-animate"):
            engine.wan_animate_request(ConditioningSettings(frames=frames))


def test_generate_refuses_one_frame_before_anything_loads(tmp_path, monkeypatch, capsys):
    """`generate --engine wan-animate --frames 1`: one line, exit 2, no model and no
    conditioning touched (the checkpoint does not even exist)."""
    from factorportrait import conditioning

    def must_not_run(*args, **kwargs):
        raise AssertionError("loaded before the request was checked")

    monkeypatch.setattr(engine, "load_wan_animate", must_not_run)
    monkeypatch.setattr(conditioning, "build_conditioning", must_not_run)
    code = main(["generate", "--engine", "wan-animate", "--checkpoint", str(tmp_path / "none"),
                 "--portrait", str(ASSETS / "example_portrait.jpg"), "--mode", "camera-only",
                 "--frames", "1", "--out", str(tmp_path / "o.mp4")])  # fmt: skip
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: frames: wan-animate makes videos")


def test_a_16_fps_request_becomes_the_engines_30_fps_with_a_note():
    from factorportrait.conditioning import ConditioningSettings

    settings, notes = engine.wan_animate_request(ConditioningSettings(fps=16, frames=49))
    assert settings.fps == 30 and settings.frames == 49
    assert len(notes) == 1 and "30 fps" in notes[0] and "16 fps" in notes[0]
    same, none = engine.wan_animate_request(ConditioningSettings(fps=30))
    assert same.fps == 30 and none == []


def test_the_prompt_is_512_tokens_and_no_negative_prompt_is_encoded_at_guidance_1():
    """Wan's text_len and diffusers' max_sequence_length: 512 (no attention mask: the padding
    count is part of the input). At guidance 1 only the prompt is encoded."""
    pipeline = loading.tiny_wan_animate_pipeline(seed=4)
    calls = []
    pipeline.text_encoder.register_forward_hook(lambda module, args, out: calls.append(args))
    positive, negative = engine.prompt_embeddings(pipeline, guidance=1.0)
    assert positive.shape[:2] == (1, 512) and negative is None
    assert len(calls) == 1
    positive, negative = engine.prompt_embeddings(pipeline, guidance=3.0)
    assert positive.shape[:2] == negative.shape[:2] == (1, 512)
    assert len(calls) == 3  # the prompt again (a new cache key) and the negative prompt


def test_the_scheduler_is_unipc_with_flow_shift_5_whatever_the_folder_carries(tiny_checkpoint):
    """Wan's generate.py samples Wan-Animate with UniPC at shift 5; diffusers' conversion
    writes the same for the Hub folder. A folder with another scheduler gets that one."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    def is_wans(scheduler):
        config = scheduler.config
        return (
            type(scheduler).__name__ == "UniPCMultistepScheduler"
            and config.prediction_type == "flow_prediction"
            and config.use_flow_sigmas
            and config.flow_shift == 5.0
        )

    assert is_wans(loading.load_wan_animate(tiny_checkpoint, "cpu").scheduler)
    pipeline = loading.tiny_wan_animate_pipeline(seed=5)
    pipeline.scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    loading._pin_scheduler(pipeline)
    assert is_wans(pipeline.scheduler)


def test_what_it_cannot_honour_says_the_camera_reaches_it_as_head_motion_only():
    """Shown with every wan-animate preview and result: in plain words, per mode."""
    assert engine.what_it_cannot_honour("frontal-dynamic") == []
    for mode in ("novel-dynamic", "camera-only", "all-dynamic"):
        notes = " ".join(engine.what_it_cannot_honour(mode))
        assert "not trained for camera control" in notes and "still body" in notes
        assert "background" in notes and "not followed" in notes
    assert "portrait's own face" in " ".join(engine.what_it_cannot_honour("camera-only"))
