"""FactorPortraitPipeline under the conventions diffusers' pipeline tester holds its pipelines
to (written here for our inputs, not copied): batches given as lists with one generator per
sample, a sample's video the same alone or in a batch, the sampling state as properties that
callbacks read, and guidance held where a callback can change it mid-run."""

import numpy as np
import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from factorportrait.pipelines.checkpoints import tiny_pipeline

F, H, W = 9, 32, 32
BATCH_TOLERANCE = 1e-4  # diffusers' tolerance for a sample alone vs. in a batch (fp32)


def _sample(seed, code_type="image"):
    """One sample's inputs, without a batch dimension."""
    g = torch.Generator().manual_seed(seed)
    expression = {
        "image": lambda: torch.rand(F, 3, 48, 48, generator=g),
        "blendshapes": lambda: torch.rand(F, 52, generator=g),
        "landmarks": lambda: torch.rand(F, 956, generator=g) * 224,
    }[code_type]
    return dict(
        reference=torch.rand(3, H, W, generator=g) * 2 - 1,
        normals=torch.rand(3, F, H, W, generator=g) * 2 - 1,
        rays=torch.randn(F, 6, H, W, generator=g),
        expression=expression(),
    )


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _batched(samples):
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def _listed(samples, keep_batch_dim=False):
    return {
        key: [s[key][None] if keep_batch_dim else s[key] for s in samples] for key in samples[0]
    }


@pytest.fixture(scope="module")
def pipeline():
    return tiny_pipeline(seed=0)


def _call(pipe, inputs, generator, **extra):
    kwargs = dict(inputs, num_inference_steps=2, generator=generator, output_type="pt")
    kwargs.update(extra)
    return pipe(**kwargs).frames


@pytest.mark.parametrize("code_type", ["image", "blendshapes"])
def test_a_sample_gives_the_same_video_alone_or_in_a_list_batch(code_type):
    pipe = tiny_pipeline(seed=0, code_type=code_type)
    samples = [_sample(1, code_type), _sample(2, code_type)]
    alone = [
        _call(pipe, _batched([sample]), _generator(seed))
        for sample, seed in zip(samples, (10, 11), strict=True)
    ]
    listed = _call(pipe, _listed(samples), [_generator(10), _generator(11)])
    assert listed.shape == (2, F, 3, H, W)
    for i in range(2):
        assert (listed[i] - alone[i][0]).abs().max() < BATCH_TOLERANCE, i
    # The two samples are different videos (the batch is not one sample twice).
    assert (listed[0] - listed[1]).abs().max() > 1e-3
    # A list of batches of one, and the batched tensors, are the same batch.
    for inputs in (_listed(samples, keep_batch_dim=True), _batched(samples)):
        torch.testing.assert_close(
            _call(pipe, inputs, [_generator(10), _generator(11)]), listed, rtol=0, atol=1e-6
        )


def test_a_batch_of_one_sample_repeated_is_consistent(pipeline):
    """diffusers' batch-consistency check: the same inputs listed twice with one generator
    per sample: two videos of the right shape, the first the video of that sample alone."""
    sample = _sample(3)
    single = _call(pipeline, _batched([sample]), _generator(0))
    batch = _call(pipeline, _listed([sample, sample]), [_generator(0), _generator(1)])
    assert batch.shape == (2, F, 3, H, W)
    assert (batch[0] - single[0]).abs().max() < BATCH_TOLERANCE
    assert (batch[1] - batch[0]).abs().max() > 1e-3  # its own noise


def test_a_list_of_conditionings_is_a_batch(pipeline):
    from test_pipeline import _conditioning

    a, b = _conditioning(seed=0), _conditioning(seed=1)
    pair = pipeline(
        [a, b], num_inference_steps=1, generator=[_generator(0), _generator(1)], output_type="pt"
    ).frames
    for i, cond in enumerate((a, b)):
        alone = pipeline(
            cond, num_inference_steps=1, generator=_generator(i), output_type="pt"
        ).frames
        assert (pair[i] - alone[0]).abs().max() < BATCH_TOLERANCE


def test_list_inputs_errors(pipeline):
    samples = [_sample(1), _sample(2)]
    with pytest.raises(ValueError, match="a list of 3 generators for a batch of 2"):
        _call(pipeline, _listed(samples), [_generator(i) for i in range(3)])
    mixed = _listed(samples)
    mixed["reference"] = [samples[0]["reference"], samples[1]["reference"][:, :16]]
    with pytest.raises(ValueError, match=r"reference\[1\] has shape \(3, 16, 32\), reference\[0\]"):
        _call(pipeline, mixed, None)
    short = _listed(samples)
    short["rays"] = short["rays"][:1]
    with pytest.raises(ValueError, match=r"reference must be \(B=1, 3, 32, 32\), got \(2, 3"):
        _call(pipeline, short, None)


def test_sampling_state_is_readable_from_callbacks(pipeline):
    seen = []

    def record(pipe, step, timestep, tensors):
        seen.append(
            dict(
                step=step,
                timestep=timestep,
                num_timesteps=pipe.num_timesteps,
                guidance_scale=pipe.guidance_scale,
                do_classifier_free_guidance=pipe.do_classifier_free_guidance,
                current_timestep=pipe.current_timestep,
                interrupt=pipe.interrupt,
                attention_kwargs=pipe.attention_kwargs,
            )
        )
        return tensors

    kwargs = {"scale": 1.0}
    _call(
        pipeline,
        _batched([_sample(0)]),
        _generator(0),
        num_inference_steps=3,
        guidance_scale=2.5,
        attention_kwargs=kwargs,
        callback_on_step_end=record,
    )
    timesteps = pipeline.scheduler.timesteps
    assert [s["step"] for s in seen] == [0, 1, 2]
    for state, t in zip(seen, timesteps, strict=True):
        assert state["timestep"] == t and state["current_timestep"] == t
        assert state["num_timesteps"] == 3 and state["guidance_scale"] == 2.5
        assert state["do_classifier_free_guidance"] is True and state["interrupt"] is False
        assert state["attention_kwargs"] == kwargs
    assert pipeline.current_timestep is None  # outside sampling
    _call(pipeline, _batched([_sample(0)]), _generator(0), guidance_scale=1.0)
    assert pipeline.guidance_scale == 1.0 and pipeline.do_classifier_free_guidance is False
    assert pipeline.num_timesteps == 2 and pipeline.attention_kwargs is None


def test_properties_exist_before_any_call():
    pipe = tiny_pipeline(seed=0)
    assert pipe.current_timestep is None and pipe.interrupt is False
    assert pipe.attention_kwargs is None


def test_a_callback_finds_the_last_step_from_num_timesteps(pipeline):
    """diffusers' callback-inputs check: a callback that zeroes the latents after the last
    step, found from the pipeline's num_timesteps, gives all-zero latents."""

    def zero_last(pipe, step, timestep, tensors):
        assert set(tensors) <= set(pipe._callback_tensor_inputs)
        if step == pipe.num_timesteps - 1:
            tensors["latents"] = torch.zeros_like(tensors["latents"])
        return tensors

    latents = _call(
        pipeline,
        _batched([_sample(0)]),
        _generator(0),
        num_inference_steps=3,
        output_type="latent",
        callback_on_step_end=zero_last,
        callback_on_step_end_tensor_inputs=pipeline._callback_tensor_inputs,
    )
    assert torch.count_nonzero(latents) == 0


def test_a_callback_can_interrupt_sampling(pipeline):
    calls = []
    hook = pipeline.transformer.register_forward_hook(lambda *_: calls.append(1))

    def stop(pipe, step, timestep, tensors):
        if step == 0:
            pipe._interrupt = True
        return tensors

    try:
        _call(
            pipeline,
            _batched([_sample(0)]),
            _generator(0),
            num_inference_steps=4,
            callback_on_step_end=stop,
        )
    finally:
        hook.remove()
    assert len(calls) == 1
    assert pipeline.interrupt is True  # as the callback left it, until the next call


def _transformer_batches(pipe, run):
    sizes = []
    hook = pipe.transformer.register_forward_hook(lambda m, a, o: sizes.append(a[0].shape[0]))
    try:
        return run(), sizes
    finally:
        hook.remove()


def test_a_callback_can_raise_guidance_through_guidance_scale_state(pipeline):
    """diffusers' callback-cfg check: a callback adds 1 to _guidance_scale after every step;
    the pipeline then reports the start value plus one per step."""

    def increase(pipe, step, timestep, tensors):
        pipe._guidance_scale += 1.0
        return tensors

    inputs = _batched([_sample(0)])
    raised = _call(
        pipeline, inputs, _generator(0), guidance_scale=2.0, callback_on_step_end=increase
    )
    assert pipeline.guidance_scale == 2.0 + pipeline.num_timesteps
    constant = _call(pipeline, inputs, _generator(0), guidance_scale=2.0)
    assert (raised - constant).abs().max() > 1e-4  # step 1 ran with guidance 3, not 2


class GuidanceCutoff(PipelineCallback):
    """Turns classifier-free guidance off after a step, the way diffusers' CFG-cutoff
    callbacks do: through the pipeline's _guidance_scale."""

    tensor_inputs = ["latents"]

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        cutoff = self.config.cutoff_step_index
        if cutoff is None:
            cutoff = int(pipeline.num_timesteps * self.config.cutoff_step_ratio)
        if step_index == cutoff:
            pipeline._guidance_scale = 1.0
        return callback_kwargs


def test_a_cfg_cutoff_callback_stops_guidance_after_its_step(pipeline):
    inputs = _batched([_sample(0)])
    steps = dict(num_inference_steps=3, guidance_scale=4.0, output_type="latent")
    guided_steps = []

    def record(pipe, step, timestep, tensors):
        guided_steps.append(tensors["latents"].clone())
        return tensors

    guided, guided_sizes = _transformer_batches(
        pipeline,
        lambda: _call(pipeline, inputs, _generator(0), **steps, callback_on_step_end=record),
    )
    cut, cut_sizes = _transformer_batches(
        pipeline,
        lambda: _call(
            pipeline,
            inputs,
            _generator(0),
            **steps,
            callback_on_step_end=GuidanceCutoff(cutoff_step_ratio=None, cutoff_step_index=0),
        ),
    )
    # Step 0 guided (a batch of conditional + unconditional), the steps after it not.
    assert guided_sizes == [2, 2, 2] and cut_sizes == [2, 1, 1]
    assert pipeline.guidance_scale == 1.0
    assert (cut - guided).abs().max() > 1e-4

    # The same as a run without guidance that starts its step 1 from the guided step 0.
    def guided_step_zero(pipe, step, timestep, tensors):
        return {"latents": guided_steps[0]} if step == 0 else tensors

    unguided_after_zero = _call(
        pipeline,
        inputs,
        _generator(0),
        **{**steps, "guidance_scale": 1.0},
        callback_on_step_end=guided_step_zero,
    )
    torch.testing.assert_close(cut, unguided_after_zero, rtol=0, atol=1e-6)
    # A cutoff after the last step changes nothing; one given as a ratio works the same, also
    # inside MultiPipelineCallbacks.
    late = _call(
        pipeline,
        inputs,
        _generator(0),
        **steps,
        callback_on_step_end=MultiPipelineCallbacks(
            [GuidanceCutoff(cutoff_step_ratio=None, cutoff_step_index=2)]
        ),
    )
    torch.testing.assert_close(late, guided, rtol=0, atol=0)
    by_ratio = _call(
        pipeline, inputs, _generator(0), **steps, callback_on_step_end=GuidanceCutoff(0.0)
    )
    torch.testing.assert_close(by_ratio, cut, rtol=0, atol=0)


def test_a_callback_can_switch_guidance_on_mid_run(pipeline):
    """Guidance is decided step by step from _guidance_scale: a run started without guidance
    adds the unconditional pass from the step after a callback raises the scale."""
    inputs = _batched([_sample(0)])
    unguided = _call(pipeline, inputs, _generator(0), guidance_scale=1.0, output_type="latent")
    switched, sizes = _transformer_batches(
        pipeline,
        lambda: _call(
            pipeline,
            inputs,
            _generator(0),
            guidance_scale=1.0,
            output_type="latent",
            callback_on_step_end=lambda pipe, i, t, k: setattr(pipe, "_guidance_scale", 4.0) or k,
        ),
    )
    assert sizes == [1, 2]
    assert (switched - unguided).abs().max() > 1e-4


def test_attention_kwargs_reach_the_transformer_and_scale_lora(pipeline):
    pytest.importorskip("peft")
    from peft import LoraConfig

    pipe = tiny_pipeline(seed=0)
    inputs = _batched([_sample(0)])
    base = _call(pipe, inputs, _generator(0), output_type="latent")
    pipe.transformer.add_adapter(
        LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_v"], init_lora_weights=False)
    )
    seen = []
    hook = pipe.transformer.register_forward_pre_hook(
        lambda m, a, k: seen.append(k.get("attention_kwargs")), with_kwargs=True
    )
    try:
        with_lora = _call(pipe, inputs, _generator(0), output_type="latent")
        off = _call(
            pipe, inputs, _generator(0), output_type="latent", attention_kwargs={"scale": 0.0}
        )
    finally:
        hook.remove()
    assert (with_lora - base).abs().max() > 1e-4
    torch.testing.assert_close(off, base, rtol=0, atol=1e-6)
    assert seen[-1] == {"scale": 0.0}
    np.testing.assert_equal(pipe.attention_kwargs, {"scale": 0.0})


def test_a_sample_under_guidance_is_the_same_alone_or_in_a_batch_of_three(pipeline):
    """Guidance batches the unconditional pass behind the conditional one: with three samples
    the halves must still be split per pass, not per sample."""
    samples = [_sample(seed) for seed in (4, 5, 6)]
    batch = _call(
        pipeline, _listed(samples), [_generator(20 + i) for i in range(3)], guidance_scale=3.0
    )
    for i, sample in enumerate(samples):
        alone = _call(pipeline, _batched([sample]), _generator(20 + i), guidance_scale=3.0)
        assert (batch[i] - alone[0]).abs().max() < BATCH_TOLERANCE, i


def test_a_bfloat16_transformer_samples_in_its_own_dtype():
    """The latents reach the transformer in its dtype (bf16 here), and the video stays close to
    the float32 one."""
    sample = _batched([_sample(7)])
    full = _call(tiny_pipeline(seed=0), sample, _generator(0))
    pipe = tiny_pipeline(seed=0)
    pipe.transformer.to(torch.bfloat16)
    half = _call(pipe, sample, _generator(0))
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - full).abs().mean() < 0.02
