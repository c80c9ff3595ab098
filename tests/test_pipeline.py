"""FactorPortraitPipeline with tiny random components: determinism, save/load, offload, cache
hooks, VAE tiling, attention backends, ablations, guidance and exact input errors."""

import numpy as np
import pytest
import torch
from diffusers import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

from factorportrait import FactorPortraitPipeline
from factorportrait.errors import InputError
from factorportrait.pipelines.checkpoints import tiny_pipeline
from factorportrait.pipelines.generation import generate_frames, label_untrained, load_pipeline
from factorportrait.pipelines.pipeline_factorportrait import drop_conditions

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

    def record(pipe, step, timestep, tensors):
        seen.append((step, float(timestep), tensors["latents"].clone()))
        return {}

    plain = _run(pipeline, callback_on_step_end=record, num_inference_steps=3, output_type="latent")
    timesteps = pipeline.scheduler.timesteps.tolist()
    assert [s for s, _, _ in seen] == [0, 1, 2] and [t for _, t, _ in seen] == timesteps
    assert seen[0][2].shape == (1, 16, 3, 4, 4)
    # What the callback sees after the last step is what the pipeline returns.
    torch.testing.assert_close(plain.frames, seen[-1][2], rtol=0, atol=0)

    def zero_after(last_step):
        def callback(pipe, step, timestep, tensors):
            return {"latents": torch.zeros_like(tensors["latents"])} if step == last_step else {}

        return callback

    # Replaced after the last step: the returned latents are exactly the replacement.
    zeroed = _run(
        pipeline, callback_on_step_end=zero_after(2), num_inference_steps=3, output_type="latent"
    ).frames
    assert torch.count_nonzero(zeroed) == 0
    # Replaced after the first step: the following steps continue from the replacement, so
    # the decoded video differs from the one made without a callback (same seed).
    without = _run(pipeline, num_inference_steps=3).frames
    replaced = _run(pipeline, callback_on_step_end=zero_after(0), num_inference_steps=3).frames
    assert np.abs(replaced - without).mean() > 1e-3


def test_cpu_offload_and_attention_backend():
    reference = _run(tiny_pipeline(seed=0)).frames
    offloaded = tiny_pipeline(seed=0)
    offloaded.enable_model_cpu_offload(device="cpu")
    np.testing.assert_allclose(_run(offloaded).frames, reference, atol=1e-6)
    native = tiny_pipeline(seed=0)
    native.transformer.set_attention_backend("native")
    np.testing.assert_allclose(_run(native).frames, reference, atol=1e-5)


def _count_calls(monkeypatch, obj, name):
    """Wrap obj.name so that its calls are counted; returns the list of call counts."""
    calls = []
    original = getattr(obj, name)

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


@torch.no_grad()
def test_vae_tiling_runs_the_tiled_path_and_slicing_splits_the_batch(monkeypatch):
    pipe = tiny_pipeline(seed=0)
    latents = _run(pipe, output_type="latent").frames  # (1, 16, 3, 4, 4)
    untiled = pipe.decode_latents(latents)
    # 24-pixel tiles (3 latents) every 16 pixels (2 latents): 2 x 2 tiles over 32 x 32.
    pipe.vae.enable_tiling(
        tile_sample_min_height=24,
        tile_sample_min_width=24,
        tile_sample_stride_height=16,
        tile_sample_stride_width=16,
    )
    decodes = _count_calls(monkeypatch, pipe.vae, "tiled_decode")
    encodes = _count_calls(monkeypatch, pipe.vae, "tiled_encode")
    tiled = pipe.decode_latents(latents)
    assert decodes == ["tiled_decode"]
    # The first tile's top-left 16 x 16 pixels are blended with no other tile: they are
    # exactly the plain decode of the top-left 3 x 3 latents alone (a frame no larger than a
    # tile is decoded whole, tiling on or not).
    corner = pipe.decode_latents(latents[..., :3, :3])
    assert decodes == ["tiled_decode"]
    torch.testing.assert_close(tiled[..., :16, :16], corner[..., :16, :16], rtol=0, atol=1e-6)
    # ...which the untiled decode of the whole frame is not (it sees the other latents).
    assert (untiled[..., :16, :16] - corner[..., :16, :16]).abs().max() > 1e-3
    # Through the pipeline: both encodes (reference, normals) and the decode are tiled.
    decodes.clear()
    frames = _run(pipe).frames
    assert decodes == ["tiled_decode"] and encodes == ["tiled_encode", "tiled_encode"]
    plain = pipe.video_processor.postprocess_video(untiled, output_type="np")
    assert np.abs(frames - plain).max() > 1e-3
    # Slicing decodes a batch one sample at a time: the same as decoding each on its own.
    pipe.vae.disable_tiling()
    pipe.vae.enable_slicing()
    pair = torch.cat([latents, latents.flip(-1)])
    single = torch.cat([pipe.decode_latents(pair[:1]), pipe.decode_latents(pair[1:])])
    sliced_decodes = _count_calls(monkeypatch, pipe.vae, "_decode")
    torch.testing.assert_close(pipe.decode_latents(pair), single, rtol=0, atol=1e-6)
    assert sliced_decodes == ["_decode", "_decode"]


def _count_forward(module, counts, key):
    return module.register_forward_hook(lambda *_: counts.__setitem__(key, counts[key] + 1))


@pytest.mark.parametrize("modulation", ["per_token", "per_frame"])
def test_first_block_cache_skips_the_tail_block_and_disabling_restores(modulation):
    pipe = tiny_pipeline(seed=0, modulation=modulation)
    baseline = _run(pipe, num_inference_steps=4, output_type="latent").frames
    counts = {0: 0, 1: 0}
    hooks = [_count_forward(b.ffn, counts, i) for i, b in enumerate(pipe.transformer.blocks)]
    try:
        # An infinite threshold: every step after the first reuses the tail's residual.
        pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=float("inf")))
        cached = _run(pipe, num_inference_steps=4, output_type="latent").frames
        assert counts == {0: 4, 1: 1}  # the first block every step, the last only at step 0
        assert (cached - baseline).abs().max() > 1e-3
        pipe.transformer.disable_cache()
        counts.update({0: 0, 1: 0})
        torch.testing.assert_close(
            _run(pipe, num_inference_steps=4, output_type="latent").frames,
            baseline,
            rtol=0,
            atol=0,
        )
        assert counts == {0: 4, 1: 4}
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("modulation", ["per_token", "per_frame"])
def test_pyramid_attention_broadcast_reuses_self_attention(modulation):
    pipe = tiny_pipeline(seed=0, modulation=modulation)
    baseline = _run(pipe, num_inference_steps=4, output_type="latent").frames
    counts = {"self": 0, "cross": 0}
    hooks = [_count_forward(b.attn1.to_q, counts, "self") for b in pipe.transformer.blocks]
    hooks += [_count_forward(b.attn2.to_q, counts, "cross") for b in pipe.transformer.blocks]
    try:
        pipe.transformer.enable_cache(
            PyramidAttentionBroadcastConfig(
                spatial_attention_block_skip_range=2,
                spatial_attention_timestep_skip_range=(-1, 10_000),  # every step may skip
                current_timestep_callback=lambda: pipe.current_timestep,
            )
        )
        cached = _run(pipe, num_inference_steps=4, output_type="latent").frames
        # 2 blocks x 4 steps: self-attention computed at steps 0 and 2 only, cross at all.
        assert counts == {"self": 2 * 2, "cross": 2 * 4}
        assert (cached - baseline).abs().max() > 1e-4
        pipe.transformer.disable_cache()
        counts.update({"self": 0, "cross": 0})
        torch.testing.assert_close(
            _run(pipe, num_inference_steps=4, output_type="latent").frames,
            baseline,
            rtol=0,
            atol=0,
        )
        assert counts == {"self": 2 * 4, "cross": 2 * 4}
    finally:
        for hook in hooks:
            hook.remove()


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


def _conditioning(frames=5, size=32, seed=0):
    """A synthetic Conditioning: every field random, so each code type has codes to read."""
    from factorportrait.conditioning import Conditioning

    rng = np.random.default_rng(seed)
    return Conditioning(
        mode="camera-only",
        fps=16.0,
        reference=rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
        normal_maps=rng.uniform(-1, 1, (frames, size, size, 3)).astype(np.float32),
        normal_mask=np.ones((frames, size, size), bool),
        ray_maps=rng.normal(size=(frames, 6, size, size)).astype(np.float32),
        K=np.eye(3)[None].repeat(frames, 0),
        c2w=np.eye(4)[None].repeat(frames, 0),
        head_pose=np.eye(4)[None].repeat(frames, 0),
        blendshapes=rng.uniform(0, 1, (frames, 52)),
        blendshape_names=[],
        crops=rng.integers(0, 255, (frames, 48, 48, 3), dtype=np.uint8),
        crop_landmarks=rng.uniform(0, 224, (frames, 478, 2)),
        source_landmarks=np.zeros((478, 3)),
        face_pixels=np.zeros((frames, 468, 2)),
    )


CODE_FIELDS = {"image": "crops", "blendshapes": "blendshapes", "landmarks": "crop_landmarks"}


@pytest.mark.parametrize("code_type", ["image", "blendshapes", "landmarks"])
def test_each_code_type_feeds_its_own_codes_to_the_model(code_type):
    from dataclasses import replace

    pipe = tiny_pipeline(seed=0, code_type=code_type)
    cond = _conditioning()
    seen = []
    hook = pipe.expression_encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0]))

    def run(conditioning):
        generator = torch.Generator().manual_seed(0)
        return pipe(
            conditioning, num_inference_steps=1, generator=generator, output_type="latent"
        ).frames

    try:
        base = run(cond)
    finally:
        hook.remove()
    # The encoder gets this code type's field, laid out as documented (B, F, ...).
    expected = {
        "image": torch.from_numpy(cond.crops).permute(0, 3, 1, 2).float() / 255,
        "blendshapes": torch.from_numpy(cond.blendshapes).float(),
        # landmark i's (x, y) at features 2i, 2i+1
        "landmarks": torch.from_numpy(
            np.stack([cond.crop_landmarks[..., 0], cond.crop_landmarks[..., 1]], -1)
        )
        .float()
        .reshape(5, 956),
    }[code_type]
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected[None], rtol=0, atol=0)
    other = _conditioning(seed=1)
    field = CODE_FIELDS[code_type]
    # Other codes, other output; the other code types' fields are not read at all.
    assert (run(replace(cond, **{field: getattr(other, field)})) - base).abs().max() > 1e-4
    for unused in set(CODE_FIELDS.values()) - {field}:
        changed = run(replace(cond, **{unused: getattr(other, unused)}))
        torch.testing.assert_close(changed, base, rtol=0, atol=0, msg=unused)
    # The controller's output layer at zero (as init-from-wan makes it): codes change nothing.
    with torch.no_grad():
        pipe.transformer.expression_controller.proj_out.weight.zero_()
        pipe.transformer.expression_controller.proj_out.bias.zero_()
    zero_init = run(cond)
    torch.testing.assert_close(
        run(replace(cond, **{field: getattr(other, field)})), zero_init, rtol=0, atol=0
    )


def _condition_latents(seed):
    g = torch.Generator().manual_seed(seed)
    return {
        "reference_latents": torch.randn(1, 16, 1, 4, 4, generator=g),
        "ray_latents": torch.randn(1, 24, 3, 4, 4, generator=g),
        "normal_latents": torch.randn(1, 16, 3, 4, 4, generator=g),
        "expression_codes": torch.randn(1, 3, 32, generator=g),
    }


DROPPED_KEYS = {
    "expression": "expression_codes",
    "reference": "reference_latents",
    "normals": "normal_latents",
}


def test_drop_conditions_zeroes_exactly_the_named_conditions():
    conditions = _condition_latents(0)
    originals = {k: v.clone() for k, v in conditions.items()}
    for name, key in DROPPED_KEYS.items():
        dropped = drop_conditions(conditions, [name])
        assert dropped[key].shape == conditions[key].shape
        assert torch.count_nonzero(dropped[key]) == 0, name
        for other in set(conditions) - {key}:
            assert dropped[other] is conditions[other], (name, other)
    everything = drop_conditions(conditions, list(DROPPED_KEYS))
    assert all(torch.count_nonzero(everything[k]) == 0 for k in DROPPED_KEYS.values())
    assert torch.equal(everything["ray_latents"], originals["ray_latents"])  # never dropped
    assert all(torch.equal(conditions[k], originals[k]) for k in conditions)  # not mutated
    assert (
        drop_conditions({**conditions, "normal_latents": None}, ["normals"])["normal_latents"]
        is None
    )  # the C2 ablation has none to drop
    with pytest.raises(ValueError, match=r"unknown \['rays'\]"):
        drop_conditions(conditions, ["rays"])


@pytest.mark.parametrize("name", ["expression", "reference", "normals"])
def test_a_dropped_condition_no_longer_reaches_the_model(pipeline, name):
    """What training's condition dropout and guidance's unconditional pass show the model:
    with the condition dropped, the output no longer depends on it; kept, it does."""
    key = DROPPED_KEYS[name]
    a = _condition_latents(0)
    b = {**a, key: _condition_latents(1)[key]}  # differs from a in this condition only
    model = pipeline.transformer
    inputs = dict(
        hidden_states=torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(2)),
        timestep=torch.tensor([500.0]),
    )
    with torch.no_grad():
        kept_a, kept_b = (model(**inputs, **c).sample for c in (a, b))
        dropped_a, dropped_b = (
            model(**inputs, **drop_conditions(c, [name])).sample for c in (a, b)
        )
    assert (kept_a - kept_b).abs().max() > 1e-4
    torch.testing.assert_close(dropped_a, dropped_b, rtol=0, atol=0)
    assert (dropped_a - kept_a).abs().max() > 1e-4


@pytest.mark.parametrize(
    "names", [("expression",), ("reference",), ("normals",), ("reference", "normals")]
)
def test_guidance_drops_exactly_the_guidance_conditions(pipeline, names):
    """One Euler step from sigma 1 to 0 returns x - v, with v = u + g (c - u): c the model on
    every condition, u the model with the named conditions zeroed here, by hand."""
    conditions = _condition_latents(0)
    latents = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    scale = 4.0
    out = pipeline(
        condition_latents=conditions,
        latents=latents,
        num_inference_steps=1,
        guidance_scale=scale,
        guidance_conditions=names,
        output_type="latent",
    ).frames
    assert pipeline.scheduler.sigmas.tolist() == [1.0, 0.0]
    t = pipeline.scheduler.timesteps[:1]
    unconditional = dict(conditions)
    for name in names:
        unconditional[DROPPED_KEYS[name]] = torch.zeros_like(conditions[DROPPED_KEYS[name]])
    with torch.no_grad():
        c = pipeline.transformer(latents, t, **conditions).sample
        u = pipeline.transformer(latents, t, **unconditional).sample
    torch.testing.assert_close(out, latents - (u + scale * (c - u)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("status", ["trained", "untrained", "wan-initialised", "in-training"])
def test_only_a_trained_checkpoint_goes_unlabelled(tmp_path, status):
    pipe = tiny_pipeline(seed=0)
    pipe.transformer.register_to_config(training_status=status)
    pipe.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    loaded = load_pipeline(tmp_path / "ckpt", device="cpu")
    assert loaded.transformer.config.training_status == status
    cond = _conditioning()
    frames = generate_frames(loaded, cond, steps=1, seed=3)
    output = loaded(
        cond, num_inference_steps=1, guidance_scale=3.0, generator=torch.Generator().manual_seed(3)
    )
    assert output.untrained is (status != "trained")
    plain = (np.clip(output.frames[0], 0, 1) * 255 + 0.5).astype(np.uint8)
    if status == "trained":
        np.testing.assert_array_equal(frames, plain)
    else:
        np.testing.assert_array_equal(frames, label_untrained(plain))
        # The banner: the top band darkened to a quarter, except where the notice is written.
        band = max(12, 32 // 14)
        darkened = frames[:, :band] <= (plain[:, :band] * 0.25).astype(np.uint8)
        assert darkened.mean() > 0.5 and (frames[:, :band] != plain[:, :band]).any()


def test_generate_frames_is_labelled_and_checkpoint_errors(pipeline, tmp_path):
    from factorportrait.conditioning import Conditioning

    rng = np.random.default_rng(0)
    cond = Conditioning(
        mode="camera-only",
        fps=16.0,
        reference=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
        normal_maps=np.zeros((5, 32, 32, 3), np.float32),
        normal_mask=np.zeros((5, 32, 32), bool),
        ray_maps=rng.normal(size=(5, 6, 32, 32)).astype(np.float32),
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


def test_the_bundle_makes_its_maps_only_when_read():
    """Normal and ray maps are given together with what they need, or made when read: asking
    for other arrays never makes them (what write_generation's saved conditioning asks for)."""
    from dataclasses import replace

    from factorportrait.conditioning import Conditioning
    from factorportrait.errors import InputError

    given = _conditioning()
    with pytest.raises(InputError, match="come together"):
        replace(given, normal_mask=None)
    # Nothing to make them from (no head template, no reference camera): the other arrays are
    # still there, and reading a map says why it cannot be made.
    bare = replace(given, normal_maps=None, normal_mask=None, ray_maps=None)
    assert isinstance(bare, Conditioning) and set(bare.arrays(["K", "fps"])) == {"K", "fps"}
    with pytest.raises(InputError, match="no head template"):
        bare.normals  # noqa: B018
    with pytest.raises(InputError, match="no reference camera"):
        bare.rays  # noqa: B018
    with pytest.raises(InputError, match="no head template"):
        bare.arrays()  # all of them: the maps too
