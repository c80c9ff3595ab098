"""Digests of the frozen parts (VAE, expression backbone) name the weights, not the device or
dtype they sit in: data that ``prepare`` made with a bf16 backbone (as it loads on CUDA) trains
under an fp32 ``train``, from the cached features (no fallback to re-encoding crops)."""

import copy
import json

import cv2
import numpy as np
import pytest
import torch

from factorportrait.io import write_video
from factorportrait.io.media import read_image
from factorportrait.pipelines.checkpoints import (
    component_digests,
    make_tiny_checkpoint,
    weights_digest,
)
from factorportrait.pipelines.generation import load_pipeline
from factorportrait.training.config import TrainConfig
from factorportrait.training.loop import PreparedSamples, train
from factorportrait.training.prepare import prepare


def _backbone():
    from factorportrait.pipelines.checkpoints import tiny_pipeline

    return tiny_pipeline(0).expression_encoder.backbone


def test_a_bf16_copy_has_the_digest_of_the_weights_it_was_made_from():
    backbone = _backbone()
    assert next(backbone.parameters()).dtype == torch.float32
    half = copy.deepcopy(backbone).to(torch.bfloat16)
    # Not bf16-representable: the copy's values differ from the original's ...
    pairs = zip(half.parameters(), backbone.parameters(), strict=True)
    assert not all(torch.equal(a.float(), b) for a, b in pairs)
    # ... and still name the same weights, as does an fp32 copy of the rounded ones.
    rounded = copy.deepcopy(half).to(torch.float32)
    assert weights_digest(half) == weights_digest(backbone) == weights_digest(rounded)
    if torch.cuda.is_available():
        assert weights_digest(copy.deepcopy(half).to("cuda")) == weights_digest(backbone)


def test_other_weights_have_another_digest():
    backbone = _backbone()
    other = copy.deepcopy(backbone)
    with torch.no_grad():  # one weight moved by more than bf16's rounding step (2^-8 of it)
        parameter = next(other.parameters())
        parameter.view(-1)[0] *= 1.05
    assert weights_digest(other) != weights_digest(backbone)
    renamed = torch.nn.ModuleDict({"other": copy.deepcopy(backbone)})
    assert weights_digest(renamed) != weights_digest(torch.nn.ModuleDict({"x": backbone}))


def test_data_prepared_with_a_bf16_backbone_trains(tmp_path, landmarker_path):
    """prepare as on CUDA (the expression backbone in bf16), without kept crops; train in
    fp32 takes the data (it refused it while digests hashed dtypes) and uses its features."""
    photo = read_image("assets/example_portrait.jpg")
    frames = [
        cv2.warpAffine(
            photo,
            cv2.getRotationMatrix2D((240, 170), 3 * np.sin(i / 4), 1.0),
            (512, 512),
            borderMode=cv2.BORDER_REFLECT,
        )[::2, ::2].copy()
        for i in range(16)
    ]
    write_video(tmp_path / "clip.mp4", np.stack(frames), 8)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "clip", "video": "clip.mp4", "split": "train"}) + "\n")
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    pipeline = load_pipeline(checkpoint, device="cpu")
    pipeline.expression_encoder.to(torch.bfloat16)  # as load_pipeline does on CUDA
    counts = prepare(
        manifest,
        tmp_path / "data",
        pipeline,
        frames=5,
        size=32,
        fps=8.0,
        landmarker=landmarker_path,
    )
    assert counts["samples"] == 1
    fp32 = load_pipeline(checkpoint, device="cpu")
    assert fp32.expression_encoder.dtype == torch.float32
    samples = PreparedSamples(tmp_path / "data", "train")
    assert samples.rows[0]["backbone_digest"] == component_digests(fp32)["backbone_digest"]
    samples.check_made_by(component_digests(fp32), tmp_path / "data")
    assert not samples.use_crops and "expression_features" in samples[0]
    config = TrainConfig(steps=1, save_every=1, validate_every=100, log_every=1)
    result = train(checkpoint, tmp_path / "data", tmp_path / "run", config, cpu=True)
    assert result["steps"] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_component_digests_do_not_depend_on_the_dtype_pipelines_load_in(tmp_path, dtype):
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny")
    pipeline = load_pipeline(checkpoint, device="cpu")
    reference = component_digests(pipeline)
    pipeline.vae.to(dtype)
    pipeline.expression_encoder.to(dtype)
    assert component_digests(pipeline) == reference
