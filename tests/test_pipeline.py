"""FactorPortraitPipeline with tiny random components: determinism, save/load, offload, cache
hooks, VAE tiling, attention backends, ablations, guidance and exact input errors."""

import numpy as np
import pytest
import torch
from diffusers import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

from factorportrait import FactorPortraitPipeline
from factorportrait.checkpoints import tiny_pipeline
from factorportrait.errors import InputError
from factorportrait.generation import generate_frames, label_untrained, load_pipeline

F, H, W = 9, 32, 32


def _inputs(frames=F, height=H, width=W, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        reference=torch.rand(1, 3, height, width, generator=g) * 2 - 1,
        normals=torch.rand(1, 3, frames, height, width, generator=g) * 2 - 1,
        rays=torch.randn(1, frames, 6, height, width, generator=g),
        expression=torch.rand(1, frames, 3, 48, 48, generator=g),
    )


def _run(pipeline, seed=0, **extra):
    kwargs = dict(_inputs(), num_inference_steps=2, generator=torch.Generator().manual_seed(seed))
    kwargs.update(extra)
    return pipeline(**kwargs)


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline(seed=0)


def test_output_shapes_range_and_untrained_flag(pipeline):
    out = _run(pipeline)
    assert out.frames.shape == (1, F, H, W, 3)
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert out.untrained is True
    latents = _run(pipeline, output_type="latent").frames
    assert latents.shape == (1, 16, 3, H // 8, W // 8)


def test_same_seed_same_frames_other_seed_other_frames(pipeline):
    a, b, c = _run(pipeline, seed=1), _run(pipeline, seed=1), _run(pipeline, seed=2)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert np.abs(a.frames - c.frames).max() > 1e-3


def test_conditions_matter(pipeline):
    base = _run(pipeline).frames
    other = _inputs(seed=5)
    for key in ("reference", "normals", "rays", "expression"):
        changed = _run(pipeline, **{key: other[key]}).frames
        assert np.abs(changed - base).max() > 1e-4, key


def test_save_and_load_round_trip(pipeline, tmp_path):
    pipeline.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    files = {p.suffix for p in (tmp_path / "ckpt").rglob("*") if p.is_file()}
    assert ".safetensors" in files and not files & {".bin", ".pt", ".pkl", ".ckpt"}
    loaded = FactorPortraitPipeline.from_pretrained(tmp_path / "ckpt", use_safetensors=True)
    assert loaded.transformer.config.training_status == "untrained"
    for name in ("transformer", "vae", "expression_encoder"):
        ours, theirs = getattr(pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), name
    np.testing.assert_array_equal(_run(loaded).frames, _run(pipeline).frames)


def test_guidance_batches_an_unconditional_pass(pipeline):
    calls = []
    hook = pipeline.transformer.register_forward_hook(lambda m, a, k: calls.append(a[0].shape[0]))
    try:
        _run(pipeline, guidance_scale=1.0)
        assert calls == [1, 1]
        calls.clear()
        guided = _run(pipeline, guidance_scale=4.0).frames
        assert calls == [2, 2]
    finally:
        hook.remove()
    assert np.abs(guided - _run(pipeline, guidance_scale=1.0).frames).max() > 1e-4
    reference_guided = _run(pipeline, guidance_scale=4.0, guidance_conditions=("reference",)).frames
    assert np.abs(reference_guided - guided).max() > 1e-4


def test_callback_on_step_end_sees_and_can_replace_latents(pipeline):
    seen = []

    def callback(pipe, step, timestep, tensors):
        seen.append((step, tensors["latents"].shape))
        return {"latents": tensors["latents"] * 0}

    _run(pipeline, callback_on_step_end=callback, num_inference_steps=3)
    assert [s for s, _ in seen] == [0, 1, 2] and seen[0][1] == (1, 16, 3, 4, 4)


def test_cpu_offload_tiling_slicing_and_attention_backend():
    reference = _run(tiny_pipeline(seed=0)).frames
    offloaded = tiny_pipeline(seed=0)
    offloaded.enable_model_cpu_offload(device="cpu")
    np.testing.assert_allclose(_run(offloaded).frames, reference, atol=1e-6)
    tiled = tiny_pipeline(seed=0)
    tiled.vae.enable_slicing()
    tiled.vae.enable_tiling(
        tile_sample_min_height=16,
        tile_sample_min_width=16,
        tile_sample_stride_height=8,
        tile_sample_stride_width=8,
    )
    assert _run(tiled).frames.shape == reference.shape
    native = tiny_pipeline(seed=0)
    native.transformer.set_attention_backend("native")
    np.testing.assert_allclose(_run(native).frames, reference, atol=1e-5)


@pytest.mark.parametrize("modulation", ["per_token", "per_frame"])
def test_cache_hooks_run(modulation):
    for config in (FirstBlockCacheConfig(threshold=0.5), "pab"):
        pipe = tiny_pipeline(seed=0, modulation=modulation)
        if config == "pab":
            config = PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2,
                current_timestep_callback=lambda pipe=pipe: pipe.current_timestep,
            )
        pipe.transformer.enable_cache(config)
        frames = _run(pipe, num_inference_steps=4).frames
        assert frames.shape == (1, F, H, W, 3) and np.isfinite(frames).all()
        pipe.transformer.disable_cache()


def test_per_frame_pipeline_matches_per_token():
    np.testing.assert_allclose(
        _run(tiny_pipeline(seed=0, modulation="per_frame")).frames,
        _run(tiny_pipeline(seed=0)).frames,
        atol=1e-5,
    )


def test_ablations_run_from_a_conditioning(tracker, pyfeat):
    from factorportrait.conditioning import ConditioningSettings, build_conditioning

    cond = build_conditioning(
        pyfeat / "single_face.jpg",
        pyfeat / "single_face.mp4",
        tracker=tracker,
        settings=ConditioningSettings(mode="frontal-dynamic", frames=9, height=32, width=32),
    )
    for kwargs in (
        {},
        {"code_type": "blendshapes"},
        {"code_type": "landmarks"},
        {"use_normals": False},
    ):
        pipe = tiny_pipeline(seed=0, **kwargs)
        out = pipe(cond, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        assert out.frames.shape == (1, 9, 32, 32, 3), kwargs


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(frames=8), "the number of frames must be 4k+1 (e.g. 49), got 8"),
        (dict(height=40), "height and width must be multiples of 16, got 40x32"),
        (
            dict(reference=torch.zeros(1, 3, 16, 32)),
            "reference must be (B=1, 3, 32, 32), got (1, 3, 16, 32)",
        ),
        (
            dict(normals=torch.zeros(1, 3, 5, 32, 32)),
            "normals must be (B=1, 3, F=9, 32, 32), got (1, 3, 5, 32, 32)",
        ),
        (
            dict(expression=torch.zeros(1, 5, 3, 48, 48)),
            "expression must have (B=1, F=9) leading dims, got (1, 5, 3, 48, 48)",
        ),
        (dict(normals=None), "normals are required: this checkpoint uses normal maps"),
        (
            dict(rays=torch.zeros(1, 9, 3, 32, 32)),
            "rays must be (B, F, 6, H, W), got (1, 9, 3, 32, 32)",
        ),
        (dict(guidance_scale=0.5), "guidance_scale must be >= 1 (1 turns guidance off), got 0.5"),
        (
            dict(latents=torch.zeros(1, 16, 2, 4, 4)),
            "latents must be (1, 16, 3, 4, 4), got (1, 16, 2, 4, 4)",
        ),
        (dict(guidance_conditions=("audio",)), "guidance_conditions: unknown ['audio']"),
        (
            dict(callback_on_step_end_tensor_inputs=["noise"]),
            "callback_on_step_end_tensor_inputs: ['noise'] are not in ['latents']",
        ),
    ],
)
def test_invalid_inputs_give_exact_errors(pipeline, change, message):
    frames, height = change.pop("frames", F), change.pop("height", H)
    kwargs = dict(_inputs(frames=frames, height=height), num_inference_steps=1)
    kwargs.update(change)
    with pytest.raises(ValueError) as error:
        pipeline(**kwargs)
    assert str(error.value) == message


def test_generate_frames_is_labelled_and_checkpoint_errors(pipeline, tmp_path):
    from factorportrait.conditioning import Conditioning

    rng = np.random.default_rng(0)
    cond = Conditioning(
        mode="camera-only",
        fps=16.0,
        reference=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
        normals=np.zeros((5, 32, 32, 3), np.float32),
        mask=np.zeros((5, 32, 32), bool),
        rays=rng.normal(size=(5, 6, 32, 32)).astype(np.float32),
        K=np.eye(3)[None].repeat(5, 0),
        c2w=np.eye(4)[None].repeat(5, 0),
        head_pose=np.eye(4)[None].repeat(5, 0),
        blendshapes=np.zeros((5, 52)),
        blendshape_names=[],
        crops=np.zeros((5, 48, 48, 3), np.uint8),
        crop_landmarks=np.zeros((5, 478, 2)),
        source_landmarks=np.zeros((478, 3)),
        face_pixels=np.zeros((5, 468, 2)),
    )
    frames = generate_frames(pipeline, cond, steps=2, seed=3)
    assert frames.shape == (5, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames, generate_frames(pipeline, cond, steps=2, seed=3))
    plain = (
        np.clip(
            pipeline(
                cond,
                num_inference_steps=2,
                guidance_scale=3.0,
                generator=torch.Generator().manual_seed(3),
            ).frames[0],
            0,
            1,
        )
        * 255
        + 0.5
    ).astype(np.uint8)
    np.testing.assert_array_equal(frames, label_untrained(plain))
    assert (frames[:, :2] != plain[:, :2]).any()  # the banner is there
    with pytest.raises(InputError, match="steps: 0 is outside"):
        generate_frames(pipeline, cond, steps=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model_index.json"):
        load_pipeline(tmp_path / "empty", device="cpu")
    with pytest.raises(InputError, match="cannot load it"):
        load_pipeline(tmp_path / "missing-dir", device="cpu")
