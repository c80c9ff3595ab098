"""The reference as its own latent frame (the paper's condition-fusion figure): the transformer
sees T+1 latent frames and predicts T; slot 0 holds only the reference latent, slots 1..T hold
no reference; the reference reaches the frames through attention alone; slot 0 gets the plain
timestep modulation; the training loss is over slots 1..T; old-layout checkpoints are refused."""

import json

import pytest
import torch

from factorportrait.errors import InputError
from factorportrait.models import FactorPortraitTransformer3DModel
from factorportrait.pipelines.checkpoints import (
    TINY_WAN_CONFIG,
    make_tiny_checkpoint,
    tiny_pipeline,
)
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.pipelines.pipeline_factorportrait import FactorPortraitPipeline
from factorportrait.training.loop import FlowMatchingObjective

TINY = dict(**TINY_WAN_CONFIG, prompt_length=8, expression_code_dim=32, expression_hidden_dim=16)
T, H, W = 3, 4, 4
SLOT_TOKENS = (H // 2) * (W // 2)  # tokens per latent frame at the tiny model's 2x2 patches


def _model(seed=0, **extra):
    """A tiny transformer whose new input channels and expression controller are not zero
    (a fresh one ignores every condition but the noise)."""
    torch.manual_seed(seed)
    model = FactorPortraitTransformer3DModel(**TINY, **extra)
    with torch.no_grad():
        model.patch_embedding.weight.normal_(std=0.3)
        torch.nn.init.normal_(model.expression_controller.proj_out.weight, std=0.5)
    return model.eval()


def _inputs(batch=2, seed=0, normals=True, codes=True):
    g = torch.Generator().manual_seed(seed)
    inputs = dict(
        hidden_states=torch.randn(batch, 16, T, H, W, generator=g),
        timestep=torch.tensor([700.0, 150.0][:batch]),
        reference_latents=torch.randn(batch, 16, 1, H, W, generator=g),
        ray_latents=torch.randn(batch, 24, T, H, W, generator=g),
        normal_latents=torch.randn(batch, 16, T, H, W, generator=g) if normals else None,
        expression_codes=torch.randn(batch, T, 32, generator=g) if codes else None,
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
    )
    return inputs


class _FusedInput:
    """Records what the patch embedding receives."""

    def __init__(self, model):
        self.seen = []
        self.handle = model.patch_embedding.register_forward_pre_hook(
            lambda module, args: self.seen.append(args[0].detach().clone())
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.mark.parametrize("modulation", ["per_token", "per_frame"])
@pytest.mark.parametrize("codes", [True, False])
@pytest.mark.parametrize("use_normals", [True, False])
@torch.no_grad()
def test_the_transformer_sees_t_plus_one_frames_in_the_paper_layout(modulation, codes, use_normals):
    model = _model(modulation=modulation, use_normals=use_normals)
    inputs = _inputs(normals=use_normals, codes=codes)
    with _FusedInput(model) as fused:
        out = model(**inputs).sample
    assert out.shape == (2, 16, T, H, W)
    (seen,) = fused.seen
    channels = 72 if use_normals else 56
    assert seen.shape == (2, channels, T + 1, H, W)
    noise, reference, rest = seen[:, :16], seen[:, 16:32], seen[:, 32:]
    # Slot 0: the reference latent in its group, zeros in the noise, normal and ray groups.
    torch.testing.assert_close(reference[:, :, :1], inputs["reference_latents"], rtol=0, atol=0)
    assert not noise[:, :, 0].any() and not rest[:, :, 0].any()
    # Slots 1..T: noise, normals, rays, and zeros in the reference group.
    assert not reference[:, :, 1:].any()
    torch.testing.assert_close(noise[:, :, 1:], inputs["hidden_states"], rtol=0, atol=0)
    conditions = [inputs["ray_latents"]]
    if use_normals:
        conditions.insert(0, inputs["normal_latents"])
    torch.testing.assert_close(rest[:, :, 1:], torch.cat(conditions, dim=1), rtol=0, atol=0)


@torch.no_grad()
def test_changing_only_the_reference_changes_every_generated_frame():
    model = _model()
    inputs = _inputs()
    base = model(**inputs).sample
    other = dict(inputs, reference_latents=torch.randn_like(inputs["reference_latents"]))
    changed = (model(**other).sample - base).abs().amax(dim=(1, 3, 4))  # (B, T)
    assert changed.shape == (2, T) and bool((changed > 1e-3).all()), changed


@torch.no_grad()
def test_the_reference_reaches_the_frames_only_through_attention():
    """With self-attention's output switched off, no token sees another: the reference slot
    can no longer change any generated frame (broadcast into every frame's channels, as the
    old layout had it, it would change all of them)."""
    model = _model()
    for block in model.blocks:
        block.attn1.to_out[0].weight.zero_()
        block.attn1.to_out[0].bias.zero_()
    inputs = _inputs()
    base = model(**inputs).sample
    other = dict(inputs, reference_latents=torch.randn_like(inputs["reference_latents"]))
    torch.testing.assert_close(model(**other).sample, base, rtol=0, atol=0)


@pytest.mark.parametrize("modulation", ["per_token", "per_frame"])
@torch.no_grad()
def test_the_reference_slot_gets_the_plain_timestep_modulation(modulation):
    """The blocks' modulation for slot 0 is the one without expression codes; slots 1..T get
    their codes' (the controller is not zero here, so those differ)."""
    model = _model(modulation=modulation)
    seen = []
    handle = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[2]))
    model(**_inputs())
    model(**_inputs(codes=False))
    handle.remove()
    with_codes, plain = seen  # per token (B, L, 6, D), or per frame (B, 1+T, 6, D)
    slots = T + 1
    if modulation == "per_token":
        assert with_codes.shape[1] == slots * SLOT_TOKENS
        with_codes = with_codes.unflatten(1, (slots, SLOT_TOKENS))
        assert bool((with_codes == with_codes[:, :, :1]).all())  # one per frame
        with_codes = with_codes[:, :, 0]
    assert with_codes.shape[1] == slots
    plain = plain.reshape(plain.shape[0], -1, 6, plain.shape[-1])[:, 0]  # (B, 6, D)
    # (equal up to float32 summation order: the projection runs on (B, 1+T, D) against (B, D))
    torch.testing.assert_close(with_codes[:, 0], plain, rtol=1e-5, atol=1e-6)
    for frame in range(1, slots):
        assert not torch.allclose(with_codes[:, frame], plain, atol=1e-3)


def _objective_and_batch(seed=0):
    pipe = tiny_pipeline(seed)
    objective = FlowMatchingObjective(pipe.transformer, pipe.expression_encoder).eval()
    g = torch.Generator().manual_seed(seed)
    features = pipe.expression_encoder.head[0].normalized_shape[0]
    batch = {
        "target_latents": torch.randn(2, 16, T, H, W, generator=g),
        "reference_latents": torch.randn(2, 16, 1, H, W, generator=g),
        "normal_latents": torch.randn(2, 16, T, H, W, generator=g),
        "ray_latents": torch.randn(2, 24, T, H, W, generator=g),
        "expression_features": torch.randn(2, 4 * (T - 1) + 1, features, generator=g),
    }
    noise = torch.randn(2, 16, T, H, W, generator=g)
    sigma = torch.tensor([0.7, 0.3])
    return objective, batch, noise, sigma


def _perturb_last_block(model, slots):
    """A hook adding a large random offset to the last block's output tokens of the given
    slots (random across features: the output norm would remove a constant one)."""
    offset = torch.randn(
        model.blocks[-1].norm1.normalized_shape, generator=torch.Generator().manual_seed(0)
    )

    def hook(module, args, output):
        output = output.clone()
        for slot in slots:
            output[:, slot * SLOT_TOKENS : (slot + 1) * SLOT_TOKENS] += 10.0 * offset
        return output

    return model.blocks[-1].register_forward_hook(hook)


@torch.no_grad()
def test_the_training_loss_is_over_the_generated_frames_only():
    """The loss is the mean squared error of the T predicted frames against noise - x0, and
    what the transformer computes at slot 0 does not enter it (what it computes at any of
    slots 1..T does)."""
    from factorportrait.training.loop import expression_codes

    objective, batch, noise, sigma = _objective_and_batch()
    model = objective.transformer
    loss = objective(batch, noise, sigma, {})
    # By hand: the same noisy input, the prediction's T frames against the flow target.
    s, x0 = sigma.view(-1, 1, 1, 1, 1), batch["target_latents"]
    prediction = model(
        (1 - s) * x0 + s * noise,
        sigma * 1000,
        batch["reference_latents"],
        batch["ray_latents"],
        batch["normal_latents"],
        expression_codes=expression_codes(objective.expression_encoder, batch),
    ).sample
    assert prediction.shape == x0.shape
    torch.testing.assert_close(loss, ((prediction - (noise - x0)) ** 2).mean())
    for slot in range(T + 1):
        handle = _perturb_last_block(model, [slot])
        try:
            perturbed = objective(batch, noise, sigma, {})
        finally:
            handle.remove()
        if slot == 0:
            torch.testing.assert_close(perturbed, loss, rtol=0, atol=0)
        else:
            assert abs(float(perturbed - loss)) > 1e-3, slot


@torch.no_grad()
def test_a_dropped_reference_leaves_slot_0_empty_in_training():
    """Condition dropout of the reference (as guidance drops it) zeroes slot 0 entirely and
    nothing else; a kept one is there."""
    objective, batch, noise, sigma = _objective_and_batch()
    with _FusedInput(objective.transformer) as fused:
        objective(batch, noise, sigma, {"reference": torch.tensor([False, True])})
        objective(batch, noise, sigma, {})
    dropped, kept = fused.seen
    assert not dropped[0, :, 0].any()
    torch.testing.assert_close(dropped[0, 16:32, 0], torch.zeros(16, H, W), rtol=0, atol=0)
    torch.testing.assert_close(kept[0, 16:32, :1], batch["reference_latents"][0], rtol=0, atol=0)
    torch.testing.assert_close(dropped[1], kept[1], rtol=0, atol=0)
    torch.testing.assert_close(dropped[0, :, 1:], kept[0, :, 1:], rtol=0, atol=0)


@torch.no_grad()
def test_the_pipeline_feeds_one_reference_frame_and_decodes_t_frames():
    pipe = tiny_pipeline(0)
    g = torch.Generator().manual_seed(0)
    frames, size = 9, 32  # 3 latent frames of 4 x 4
    with _FusedInput(pipe.transformer) as fused:
        video = pipe(
            reference=torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            normals=torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1,
            rays=torch.randn(1, frames, 6, size, size, generator=g),
            expression=torch.rand(1, frames, 3, 28, 28, generator=g),
            num_inference_steps=2,
            guidance_scale=2.0,
            generator=torch.Generator().manual_seed(0),
        ).frames
    assert video.shape == (1, frames, size, size, 3)
    assert [tuple(x.shape) for x in fused.seen] == [(2, 72, 4, 4, 4)] * 2  # guided: 2 in a batch
    with pytest.raises(ValueError, match="reference_latents must be one latent frame"):
        pipe(
            condition_latents={
                "reference_latents": torch.randn(1, 16, 3, 4, 4),
                "ray_latents": torch.randn(1, 24, 3, 4, 4),
                "normal_latents": torch.randn(1, 16, 3, 4, 4),
                "expression_codes": torch.randn(1, 3, 32),
            },
            num_inference_steps=1,
        )


def _old_layout(folder):
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    assert config.pop("condition_layout") == "reference-frame"
    config_path.write_text(json.dumps(config))


def test_a_checkpoint_in_the_old_layout_is_refused(tmp_path):
    made = make_tiny_checkpoint(tmp_path / "tiny")
    assert FactorPortraitPipeline.from_pretrained(str(made), use_safetensors=True)  # loads
    _old_layout(made)
    message = "saved in the old broadcast layout .* re-make it .*none were ever trained"
    with pytest.raises(ValueError, match=message):
        FactorPortraitPipeline.from_pretrained(str(made), use_safetensors=True)
    with pytest.raises(ValueError, match=message):
        FactorPortraitTransformer3DModel.from_pretrained(str(made / "transformer"))
    with pytest.raises(InputError, match=f"cannot load it \\({message}"):
        load_pipeline(made, device="cpu")
    config = json.loads((made / "transformer" / "config.json").read_text())
    config["condition_layout"] = "broadcast"
    (made / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="condition_layout must be 'reference-frame'"):
        FactorPortraitPipeline.from_pretrained(str(made), use_safetensors=True)
