"""The FactorPortrait networks, built tiny in code: shapes, packing, zero-init equivalence with
Wan, per-frame expression control, the per-frame modulation variant, gradient checkpointing."""

import numpy as np
import pytest
import torch
from diffusers import WanTransformer3DModel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from factorportrait.models import (
    FactorPortraitExpressionEncoder,
    FactorPortraitTransformer3DModel,
    aggregate_codes,
    latent_frames,
    pack_plucker,
)
from factorportrait.pipelines.checkpoints import (
    TINY_BACKBONE,
    TINY_WAN_CONFIG,
    init_from_wan,
    tiny_wan_transformer,
    tiny_wan_vae,
)
from factorportrait.pipelines.pipeline_factorportrait import FactorPortraitPipeline

TINY = dict(**TINY_WAN_CONFIG, prompt_length=8, expression_code_dim=32, expression_hidden_dim=16)


def _inputs(batch=1, t=3, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 16, t, h, w, generator=g),
        timestep=torch.full((batch,), 700.0),
        reference_latents=torch.randn(batch, 16, 1, h, w, generator=g),
        ray_latents=torch.randn(batch, 24, t, h, w, generator=g),
        normal_latents=torch.randn(batch, 16, t, h, w, generator=g),
        expression_codes=torch.randn(batch, t, 32, generator=g),
        encoder_hidden_states=torch.randn(batch, 8, 16, generator=g),
    )


@pytest.mark.parametrize("k", [0, 1, 2, 12])
def test_frames_to_latent_frames(k):
    frames = 4 * k + 1
    assert latent_frames(frames) == k + 1
    codes = torch.arange(frames, dtype=torch.float32).view(1, frames, 1)
    aggregated = aggregate_codes(codes)
    assert aggregated.shape == (1, k + 1, 4)
    assert aggregated[0, 0].tolist() == [0, 0, 0, 0]  # the first frame alone
    for i in range(1, k + 1):
        assert aggregated[0, i].tolist() == [4 * i - 3, 4 * i - 2, 4 * i - 1, 4 * i]


def test_latent_frames_refuses_other_counts():
    with pytest.raises(ValueError, match="frames must be 4k\\+1, got 8"):
        latent_frames(8)


def test_plucker_packing_to_the_latent_grid():
    rays = torch.randn(2, 9, 6, 32, 48)
    packed = pack_plucker(rays)
    assert packed.shape == (2, 24, 3, 4, 6)
    # Latent frame 1, channels 6-11 = frame 2's six channels, averaged over an 8x8 cell.
    cell = rays[1, 2, :, 8:16, 16:24].mean(dim=(-1, -2))
    torch.testing.assert_close(packed[1, 6:12, 1, 1, 2], cell)
    # Latent frame 0 is frame 0 four times over.
    first = rays[0, 0, :, :8, :8].mean(dim=(-1, -2))
    torch.testing.assert_close(packed[0, :, 0, 0, 0], first.repeat(4))


def test_shapes_through_the_transformer_and_no_normals_ablation():
    model = FactorPortraitTransformer3DModel(**TINY)
    assert model.patch_embedding.in_channels == 72
    out = model(**_inputs(batch=2)).sample
    assert out.shape == (2, 16, 3, 4, 4)
    c2 = FactorPortraitTransformer3DModel(**TINY, use_normals=False)
    assert c2.patch_embedding.in_channels == 56
    inputs = _inputs()
    inputs.pop("normal_latents")
    assert c2(**inputs).sample.shape == (1, 16, 3, 4, 4)
    with pytest.raises(ValueError, match="normal_latents are required"):
        model(**inputs)


@pytest.mark.parametrize("batch", [1, 2])
def test_per_frame_modulation_equals_per_token(batch):
    torch.manual_seed(0)
    per_token = FactorPortraitTransformer3DModel(**TINY)
    torch.nn.init.normal_(per_token.expression_controller.proj_out.weight)  # make it matter
    per_frame = FactorPortraitTransformer3DModel(**TINY, modulation="per_frame")
    per_frame.load_state_dict(per_token.state_dict())  # same weight names
    inputs = _inputs(batch=batch)
    inputs["timestep"] = torch.tensor([700.0, 150.0][:batch])  # one noise level per sample
    torch.testing.assert_close(
        per_frame(**inputs).sample, per_token(**inputs).sample, rtol=0, atol=1e-6
    )
    inputs["expression_codes"] = None
    torch.testing.assert_close(
        per_frame(**inputs).sample, per_token(**inputs).sample, rtol=0, atol=1e-6
    )


class _Allocations(TorchDispatchMode):
    """Every tensor an operation creates (not a view of, or written into, an input): its shape
    and bytes. Device-neutral: what is allocated, not what an allocator reports."""

    def __init__(self):
        super().__init__()
        self.tensors = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr()
            for t in tree_flatten((args, kwargs))[0]
            if isinstance(t, torch.Tensor)
        }
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.tensors.append((tuple(t.shape), t.untyped_storage().nbytes()))
        return out


@torch.no_grad()
def test_per_frame_modulation_never_allocates_the_per_token_tensor():
    """The claim "per-frame modulation uses less memory", counted: the per-token path makes
    (B, L, 6, D) float32 modulation tensors (one when it expands the frames' modulation to the
    tokens, one more in each block when it adds the block's table); the per-frame path makes
    (B, T, 6, D) ones in their place and no tensor of L x 6 x D."""
    torch.manual_seed(0)
    per_token = FactorPortraitTransformer3DModel(**TINY)
    per_frame = FactorPortraitTransformer3DModel(**TINY, modulation="per_frame")
    per_frame.load_state_dict(per_token.state_dict())
    # 3 latent frames and the reference slot, of 4 x 4 patches each: L = 64 tokens
    inputs = _inputs(t=3, h=8, w=8)
    batch, frames, tokens, dim, layers = 1, 4, 64, 16, TINY["num_layers"]
    made = {}
    for name, model in (("per_token", per_token), ("per_frame", per_frame)):
        with _Allocations() as allocations:
            model(**inputs)
        made[name] = allocations.tensors
    per_token_bytes = batch * tokens * 6 * dim * 4
    per_frame_bytes = batch * frames * 6 * dim * 4

    def modulation(tensors):  # (..., 6, D): the six AdaLN rows of D
        return [(shape, size) for shape, size in tensors if shape[-2:] == (6, dim)]

    # (repeat_interleave makes its copy as (B, T, L/T, 6, D), then views it as (B, L, 6, D))
    assert [size for _, size in modulation(made["per_token"])] == [per_token_bytes] * (1 + layers)
    assert modulation(made["per_frame"]) == [((batch, frames, 6, dim), per_frame_bytes)] * layers
    # In all, at least those tensors' worth less.
    saved = sum(size for _, size in made["per_token"]) - sum(size for _, size in made["per_frame"])
    assert saved >= (1 + layers) * per_token_bytes - layers * per_frame_bytes


@torch.no_grad()
def test_expression_code_of_one_latent_frame_changes_that_frame_most():
    torch.manual_seed(0)
    model = FactorPortraitTransformer3DModel(**TINY)
    torch.nn.init.normal_(model.expression_controller.proj_out.weight)
    inputs = _inputs(t=4)
    base = model(**inputs).sample
    for frame in range(4):
        changed = dict(inputs)
        changed["expression_codes"] = inputs["expression_codes"].clone()
        changed["expression_codes"][:, frame] = torch.randn(32)  # another expression
        difference = (model(**changed).sample - base).abs().mean(dim=(0, 1, 3, 4))
        assert int(difference.argmax()) == frame
        assert difference[frame] > 2 * np.delete(difference.numpy(), frame).max()


def test_fresh_controller_leaves_the_model_unchanged():
    model = FactorPortraitTransformer3DModel(**TINY)
    inputs = _inputs()
    with_codes = model(**inputs).sample
    inputs["expression_codes"] = None
    torch.testing.assert_close(model(**inputs).sample, with_codes, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def wan_and_init(tmp_path_factory):
    """A tiny random Wan2.1 saved like the Hub's diffusers repos, and the checkpoint built from it."""
    root = tmp_path_factory.mktemp("wan")
    wan = tiny_wan_transformer(seed=3)
    wan.save_pretrained(root / "wan" / "transformer")
    tiny_wan_vae(seed=3).save_pretrained(root / "wan" / "vae")
    init_from_wan(root / "wan", root / "init")
    return wan, FactorPortraitPipeline.from_pretrained(root / "init", use_safetensors=True)


@pytest.mark.parametrize("conditions", ["zeroed", "random"])
def test_init_from_wan_equals_wan(wan_and_init, conditions):
    wan, pipeline = wan_and_init
    model = pipeline.transformer
    assert model.config.training_status == "wan-initialised" and model.is_untrained
    inputs = _inputs()
    inputs["expression_codes"] = torch.randn(1, 3, model.config.expression_code_dim)
    if conditions == "zeroed":
        for key in ("reference_latents", "ray_latents", "normal_latents", "expression_codes"):
            inputs[key] = torch.zeros_like(inputs[key])
    ours = model(**inputs).sample
    # Wan's weights sit on the noise channels only, and the reference slot's noise group is
    # zero: a fresh model is Wan seeing a blank first latent frame before the T frames.
    blank_first = torch.nn.functional.pad(inputs["hidden_states"], (0, 0, 0, 0, 1, 0))
    reference = wan(blank_first, inputs["timestep"], inputs["encoder_hidden_states"]).sample
    torch.testing.assert_close(ours, reference[:, :, 1:], rtol=0, atol=1e-6)


def test_init_from_wan_refuses_what_is_not_wan(tmp_path):
    from factorportrait.errors import InputError

    with pytest.raises(InputError, match="not a loadable diffusers Wan2.1 checkpoint"):
        init_from_wan(tmp_path / "nothing", tmp_path / "out")
    i2v = WanTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=36,
        out_channels=16,
        text_dim=16,
        freq_dim=16,
        ffn_dim=32,
        num_layers=1,
    )
    i2v.save_pretrained(tmp_path / "i2v" / "transformer")
    tiny_wan_vae().save_pretrained(tmp_path / "i2v" / "vae")
    with pytest.raises(InputError, match="expected a text-to-video Wan2.1"):
        init_from_wan(tmp_path / "i2v", tmp_path / "out")


def test_expression_encoder_codes_and_frozen_backbone():
    encoder = FactorPortraitExpressionEncoder(
        code_type="image", backbone_config=TINY_BACKBONE, code_dim=8, image_size=28
    )
    codes = encoder(torch.rand(2, 5, 3, 64, 64))
    assert codes.shape == (2, 5, 8)
    assert not any(p.requires_grad for p in encoder.backbone.parameters())
    assert all(p.requires_grad for p in encoder.head.parameters())
    encoder.train()
    assert not encoder.backbone.training
    for code_type, size in (("blendshapes", 52), ("landmarks", 956)):
        other = FactorPortraitExpressionEncoder(code_type=code_type, code_dim=8)
        assert other(torch.rand(1, 5, size)).shape == (1, 5, 8)


def _gradients(model, inputs):
    model.zero_grad(set_to_none=True)
    model(**inputs).sample.square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_recomputes_the_blocks_and_keeps_the_gradients(monkeypatch):
    torch.manual_seed(0)
    model = FactorPortraitTransformer3DModel(**TINY)
    torch.nn.init.normal_(model.expression_controller.proj_out.weight)  # give it a gradient path
    model.train()
    inputs = _inputs()
    checkpoints, block_calls = [], []
    original = torch.utils.checkpoint.checkpoint

    def spy(function, *args, **kwargs):
        checkpoints.append(function)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", spy)
    # A pre-hook: the recomputation stops as soon as the saved tensors are back, so a block's
    # forward hook may not fire the second time; its pre-hook does.
    hooks = [
        block.register_forward_pre_hook(lambda m, _: block_calls.append(m))
        for block in model.blocks
    ]
    try:
        plain = _gradients(model, inputs)
        # Without checkpointing: each block runs once, nothing is checkpointed.
        assert checkpoints == [] and len(block_calls) == len(model.blocks)
        block_calls.clear()
        model.enable_gradient_checkpointing()
        checkpointed = _gradients(model, inputs)
    finally:
        for hook in hooks:
            hook.remove()
    # With it: every block checkpointed, and run again in the backward pass (recomputed
    # instead of keeping its activations).
    assert len(checkpoints) == len(model.blocks)
    assert block_calls == [*model.blocks, *reversed(model.blocks)]
    # ...with the same gradients, for every parameter that has one.
    assert checkpointed.keys() == plain.keys()
    assert "expression_controller.proj_out.weight" in plain and "blocks.0.ffn.net.2.weight" in plain
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # Inference (no grad) never checkpoints.
    with torch.no_grad():
        model(**inputs)
    assert len(checkpoints) == len(model.blocks)


def test_init_from_wan_ablations(tmp_path):
    tiny_wan_transformer(seed=1).save_pretrained(tmp_path / "wan" / "transformer")
    tiny_wan_vae(seed=1).save_pretrained(tmp_path / "wan" / "vae")
    init_from_wan(tmp_path / "wan", tmp_path / "c2", use_normals=False)
    init_from_wan(tmp_path / "wan", tmp_path / "c3", code_type="landmarks")
    c2 = FactorPortraitPipeline.from_pretrained(tmp_path / "c2", use_safetensors=True)
    c3 = FactorPortraitPipeline.from_pretrained(tmp_path / "c3", use_safetensors=True)
    assert (
        c2.transformer.patch_embedding.in_channels == 56 and not c2.transformer.config.use_normals
    )
    assert (
        c3.expression_encoder.config.code_type == "landmarks"
        and c3.expression_encoder.backbone is None
    )
