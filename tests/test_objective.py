"""The training objective and condition dropout, on stand-in models whose answers are known.

Fast unit tests (no train() run): the flow-matching noise levels, the noisy input, the target,
the per-sample condition dropout and the conditions the transformer receives are each checked
against values worked out by hand. They exist so a silent error in the objective fails in
seconds, and so mutation testing (TESTING.md) can afford to run them for every mutant.
"""

from types import SimpleNamespace

import pytest
import torch

from factorportrait.pipelines.pipeline_factorportrait import DROPPABLE, drop_conditions
from factorportrait.training.config import TrainConfig
from factorportrait.training.objective import (
    FlowMatchingObjective,
    draw_randomness,
    expression_codes,
    flow_matching_sigmas,
    training_loss,
)


class RecordingTransformer(torch.nn.Module):
    """Stands in for the transformer: records what it was called with and predicts a fixed
    velocity, so the loss has a value computable by hand."""

    def __init__(self, prediction: float = 0.0, use_normals: bool = True):
        super().__init__()
        self.config = SimpleNamespace(use_normals=use_normals)
        self.patch_embedding = torch.nn.Conv3d(1, 1, 1)  # only its dtype is read
        self.prediction = prediction
        self.calls = []

    def forward(self, hidden_states, timestep, **conditions):
        self.calls.append((hidden_states.clone(), timestep.clone(), conditions))
        return SimpleNamespace(sample=torch.full_like(hidden_states, self.prediction))


class IdentityEncoder(torch.nn.Module):
    """Blendshape codes passed through unchanged."""

    def __init__(self, code_type: str = "blendshapes"):
        super().__init__()
        self.config = SimpleNamespace(code_type=code_type)
        self.seen = []

    def forward(self, x, pooled: bool = False):
        self.seen.append((x, pooled))
        return x


def _batch(batch: int = 2, frames: int = 5) -> dict:
    latent = (frames - 1) // 4 + 1
    return {
        "target_latents": torch.full((batch, 2, latent, 2, 2), 2.0),
        "reference_latents": torch.full((batch, 2, 1, 2, 2), 3.0),
        "ray_latents": torch.full((batch, 24, latent, 2, 2), 4.0),
        "normal_latents": torch.full((batch, 2, latent, 2, 2), 5.0),
        "blendshapes": torch.arange(batch * frames * 3, dtype=torch.float32).reshape(
            batch, frames, 3
        ),
    }


def test_noise_levels_without_spread_are_the_shifted_sigmoid_of_the_mean():
    generator = torch.Generator().manual_seed(0)
    # sigmoid(0) = 1/2; shift 3: 3 * 0.5 / (1 + 2 * 0.5) = 0.75; shift 1 leaves 0.5.
    config = TrainConfig(logit_mean=0.0, logit_std=0.0, shift=3.0)
    assert torch.allclose(flow_matching_sigmas(4, config, generator), torch.full((4,), 0.75))
    config = TrainConfig(logit_mean=0.0, logit_std=0.0, shift=1.0)
    assert torch.allclose(flow_matching_sigmas(4, config, generator), torch.full((4,), 0.5))
    # logit mean ln 3: sigmoid = 3/4; shift 2: 2 * 0.75 / (1 + 0.75) = 6/7.
    config = TrainConfig(logit_mean=float(torch.log(torch.tensor(3.0))), logit_std=0.0, shift=2.0)
    assert torch.allclose(flow_matching_sigmas(3, config, generator), torch.full((3,), 6 / 7))


def test_noise_levels_are_logit_normal_around_the_shifted_median():
    """A monotone map keeps the median: median(sigma) = shift(sigmoid(mean)); the spread grows
    with logit_std and every level lies in (0, 1)."""
    generator = torch.Generator().manual_seed(1)
    narrow = flow_matching_sigmas(20000, TrainConfig(logit_std=0.5, shift=3.0), generator)
    wide = flow_matching_sigmas(20000, TrainConfig(logit_std=2.0, shift=3.0), generator)
    assert abs(narrow.median().item() - 0.75) < 0.01
    assert abs(wide.median().item() - 0.75) < 0.02
    assert 0 < wide.min() and wide.max() < 1
    assert wide.std() > 1.5 * narrow.std()
    # The shift pushes levels towards noise: sigmoid alone would have its median at 0.5.
    plain = flow_matching_sigmas(20000, TrainConfig(logit_std=1.0, shift=1.0), generator)
    assert abs(plain.median().item() - 0.5) < 0.01


def test_objective_feeds_the_interpolated_latents_and_scores_the_velocity():
    transformer = RecordingTransformer(prediction=1.0)
    objective = FlowMatchingObjective(transformer, IdentityEncoder())
    batch = _batch()
    noise = torch.full_like(batch["target_latents"], -2.0)
    sigma = torch.tensor([0.25, 0.75])
    loss = objective(batch, noise, sigma, keep={})
    noisy, timestep, conditions = transformer.calls[0]
    # x_t = (1 - s) x0 + s e with x0 = 2, e = -2: 1.0 at s = 1/4, -1.0 at s = 3/4.
    assert torch.allclose(noisy[0], torch.full_like(noisy[0], 1.0))
    assert torch.allclose(noisy[1], torch.full_like(noisy[1], -1.0))
    assert torch.allclose(timestep, torch.tensor([250.0, 750.0]))
    # Target e - x0 = -4, prediction 1: squared error 25 everywhere.
    assert loss.item() == pytest.approx(25.0)
    assert torch.equal(conditions["reference_latents"], batch["reference_latents"])
    assert torch.equal(conditions["ray_latents"], batch["ray_latents"])
    assert torch.equal(conditions["normal_latents"], batch["normal_latents"])
    # Blendshape codes folded per latent frame: frame 0 four times, then frames 1-4.
    codes = conditions["expression_codes"]
    shapes = batch["blendshapes"]
    assert codes.shape == (2, 2, 12)
    assert torch.equal(codes[:, 0], shapes[:, 0].repeat(1, 4))
    assert torch.equal(codes[:, 1], shapes[:, 1:5].flatten(1))


def test_a_perfect_prediction_has_zero_loss_and_the_loss_is_the_mean_square():
    batch = _batch(batch=1)
    noise = torch.randn(batch["target_latents"].shape, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([0.5])
    target = noise - batch["target_latents"]

    class Perfect(RecordingTransformer):
        def forward(self, hidden_states, timestep, **conditions):
            return SimpleNamespace(sample=target.clone())

    assert FlowMatchingObjective(Perfect(), IdentityEncoder())(batch, noise, sigma, {}) == 0
    loss = FlowMatchingObjective(RecordingTransformer(0.0), IdentityEncoder())(
        batch, noise, sigma, {}
    )
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-6)


def test_dropout_zeroes_a_condition_for_the_dropped_samples_only():
    transformer = RecordingTransformer()
    objective = FlowMatchingObjective(transformer, IdentityEncoder())
    batch = _batch()
    keep = {
        "reference": torch.tensor([True, False]),
        "expression": torch.tensor([False, True]),
        "normals": torch.tensor([True, True]),
    }
    objective(batch, torch.zeros_like(batch["target_latents"]), torch.tensor([0.5, 0.5]), keep)
    conditions = transformer.calls[0][2]
    reference, codes = conditions["reference_latents"], conditions["expression_codes"]
    assert torch.equal(reference[0], batch["reference_latents"][0])
    assert torch.count_nonzero(reference[1]) == 0
    assert torch.count_nonzero(codes[0]) == 0
    assert torch.equal(codes[1], expression_codes(IdentityEncoder(), batch)[1])
    assert torch.equal(conditions["normal_latents"], batch["normal_latents"])
    # Rays are never dropped (the camera is always known).
    assert torch.equal(conditions["ray_latents"], batch["ray_latents"])


def test_without_normals_the_transformer_gets_none_even_when_dropout_runs():
    transformer = RecordingTransformer(use_normals=False)
    objective = FlowMatchingObjective(transformer, IdentityEncoder())
    batch = _batch()
    keep = {"normals": torch.tensor([False, True])}
    objective(batch, torch.zeros_like(batch["target_latents"]), torch.tensor([0.5, 0.5]), keep)
    assert transformer.calls[0][2]["normal_latents"] is None


def test_dropout_draws_follow_the_configured_probabilities():
    batch = {"target_latents": torch.zeros(4000, 1, 1, 1, 1)}
    config = TrainConfig(drop_expression=0.25, drop_reference=1.0, drop_normals=0.0)
    noise, sigma, keep = draw_randomness(batch, config, torch.Generator().manual_seed(3))
    assert noise.shape == batch["target_latents"].shape and sigma.shape == (4000,)
    assert set(keep) == {"expression", "reference"}  # probability 0: nothing drawn
    assert keep["expression"].dtype == torch.bool
    assert abs(keep["expression"].float().mean().item() - 0.75) < 0.03
    assert not keep["reference"].any()
    _, _, none = draw_randomness(batch, config, torch.Generator().manual_seed(3), drop=False)
    assert none == {}
    # The same seed draws the same noise, levels and masks.
    again = draw_randomness(batch, config, torch.Generator().manual_seed(3))
    assert torch.equal(again[0], noise) and torch.equal(again[1], sigma)
    assert torch.equal(again[2]["expression"], keep["expression"])


def test_training_loss_without_dropout_sees_every_condition():
    transformer = RecordingTransformer()
    objective = FlowMatchingObjective(transformer, IdentityEncoder())
    batch = _batch()
    config = TrainConfig(drop_expression=1.0, drop_reference=1.0, drop_normals=1.0)
    training_loss(objective, batch, config, torch.Generator().manual_seed(4), drop=False)
    conditions = transformer.calls[0][2]
    assert torch.equal(conditions["reference_latents"], batch["reference_latents"])
    assert torch.count_nonzero(conditions["expression_codes"][:, 1:]) > 0
    training_loss(objective, batch, config, torch.Generator().manual_seed(4))
    dropped = transformer.calls[1][2]
    for key in ("reference_latents", "normal_latents", "expression_codes"):
        assert torch.count_nonzero(dropped[key]) == 0, key


def test_drop_conditions_zeroes_named_conditions_and_leaves_the_input_alone():
    conditions = {
        "expression_codes": torch.ones(1, 2, 3),
        "reference_latents": torch.full((1, 2), 2.0),
        "normal_latents": None,
        "ray_latents": torch.full((1, 2), 3.0),
    }
    dropped = drop_conditions(conditions, ["reference", "normals"])
    assert torch.count_nonzero(dropped["reference_latents"]) == 0
    assert dropped["reference_latents"].shape == (1, 2)
    assert dropped["normal_latents"] is None
    assert dropped["expression_codes"] is conditions["expression_codes"]
    assert dropped["ray_latents"] is conditions["ray_latents"]
    assert torch.equal(conditions["reference_latents"], torch.full((1, 2), 2.0))
    assert set(DROPPABLE) == {"expression", "reference", "normals"}
    with pytest.raises(ValueError, match=r"unknown \['rays'\]"):
        drop_conditions(conditions, ["expression", "rays"])


@pytest.mark.parametrize(
    ("code_type", "field", "pooled"),
    [("blendshapes", "blendshapes", False), ("landmarks", "crop_landmarks", False)],
)
def test_expression_codes_read_the_field_of_their_code_type(code_type, field, pooled):
    encoder = IdentityEncoder(code_type)
    batch = {
        "blendshapes": torch.full((1, 5, 3), 1.0),
        "crop_landmarks": torch.full((1, 5, 4, 2), 2.0),
        "expression_features": torch.full((1, 5, 6), 3.0),
    }
    codes = expression_codes(encoder, batch)
    seen, was_pooled = encoder.seen[0]
    assert was_pooled == pooled
    expected = batch[field].flatten(2)
    assert torch.equal(seen, expected)
    assert codes.shape == (1, 2, 4 * expected.shape[-1])


def test_image_codes_prefer_cached_features_then_crops():
    encoder = IdentityEncoder("image")
    features = torch.full((1, 5, 6), 3.0)
    expression_codes(encoder, {"expression_features": features})
    assert encoder.seen[-1][1] is True and torch.equal(encoder.seen[-1][0], features)
    crops = torch.full((1, 5, 8, 8, 3), 255, dtype=torch.uint8)
    expression_codes(encoder, {"crops": crops})
    seen, pooled = encoder.seen[-1]
    # Crops (B, F, H, W, 3) uint8 -> (B, F, 3, H, W) floats in [0, 1].
    assert pooled is False and seen.shape == (1, 5, 3, 8, 8)
    assert torch.equal(seen, torch.ones(1, 5, 3, 8, 8))


def test_the_transformer_gets_its_inputs_in_its_own_dtype():
    transformer = RecordingTransformer()
    transformer.patch_embedding.to(torch.bfloat16)
    objective = FlowMatchingObjective(transformer, IdentityEncoder())
    batch = _batch()
    loss = objective(batch, torch.zeros_like(batch["target_latents"]), torch.tensor([0.5, 0.5]), {})
    noisy, _, conditions = transformer.calls[0]
    assert noisy.dtype == torch.bfloat16
    for key in ("reference_latents", "ray_latents", "normal_latents", "expression_codes"):
        assert conditions[key].dtype == torch.bfloat16, key
    assert loss.dtype == torch.float32  # the loss itself is taken in float32


def test_training_loss_is_reproducible_from_its_generator():
    class NoisePredictor(RecordingTransformer):
        def forward(self, hidden_states, timestep, **conditions):
            return SimpleNamespace(sample=hidden_states * 0.5)

    objective = FlowMatchingObjective(NoisePredictor(), IdentityEncoder())
    batch = _batch()
    batch["target_latents"] = torch.randn(2, 2, 2, 2, 2, generator=torch.Generator().manual_seed(9))
    config = TrainConfig()

    def loss(seed):
        return training_loss(objective, batch, config, torch.Generator().manual_seed(seed)).item()

    assert loss(5) == loss(5)
    assert loss(5) != loss(6)
