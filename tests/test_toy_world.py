"""The toy world (EXPERIMENTS.md): its pictures follow the factors it is told, its samples are
what ``prepare`` writes, and a short run of the experiment shows each condition carrying its
factor (the slow test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from factorportrait.checkpoints import tiny_pipeline
from factorportrait.toy_world import world
from factorportrait.training.data import PreparedSamples
from factorportrait.viewpoint import orbit_c2w

# What prepare caches for a blendshapes / landmarks checkpoint (training.prepare).
PREPARED_KEYS = {
    "target_latents",
    "reference_latents",
    "normal_latents",
    "ray_latents",
    "blendshapes",
    "crop_landmarks",
}


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    mesh = world.head_mesh()
    subject = world.make_subjects(1, rng)[0]
    frames = 2
    K = np.repeat(world.intrinsics_from_fov(30.0, world.SIZE, world.SIZE)[None], frames, 0)
    return mesh, subject, K


def _render(scene, *, yaw=(0.0, 0.0), azimuth=(0.0, 0.0), mouth=(0.0, 0.0), eyes=(0.0, 0.0)):
    mesh, subject, K = scene
    pose = world.rotation_yaw_pitch(np.array(yaw), np.zeros(2))
    c2w = orbit_c2w(np.array(azimuth), 0.0, world.DISTANCE_CM)
    return world.render(mesh, subject, pose, c2w, K, np.array(mouth), np.array(eyes))


def test_expression_paints_the_face_and_leaves_the_normals(scene):
    """Opening the mouth and closing the eyes changes head pixels only, and not the normal maps
    (expression reaches the model through its codes alone)."""
    images, normals, mask = _render(scene, mouth=(0.0, 1.0), eyes=(0.0, 1.0))
    changed = np.abs(images[0].astype(int) - images[1].astype(int)).sum(-1) > 0
    assert changed.sum() > 40  # a visible change: dozens of pixels at 64x64
    assert not (changed & ~mask[0]).any()
    np.testing.assert_array_equal(normals[0], normals[1])
    # The mouth opens below the eyes' line: the change is in the lower half of the head.
    rows = np.nonzero(changed.any(axis=1))[0]
    assert rows.max() > world.SIZE // 2


def test_head_turn_and_camera_turn_are_told_apart(scene):
    """A head turn changes the head's normals and leaves the background; a camera turn moves
    the background (the world's viewpoint signal)."""
    images, normals, mask = _render(scene, yaw=(0.0, 20.0))
    np.testing.assert_array_equal(images[0][~(mask[0] | mask[1])], images[1][~(mask[0] | mask[1])])
    assert np.abs(normals[0] - normals[1])[mask[0] & mask[1]].max() > 0.2
    images, _, mask = _render(scene, azimuth=(0.0, 20.0))
    background = ~(mask[0] | mask[1])
    assert np.abs(images[0].astype(int) - images[1].astype(int))[background].mean() > 20


def test_old_ray_convention_hides_the_novel_view():
    """Relative to the reference camera, a held novel view's rays differ from the frontal ones;
    relative to the first output frame (the old convention) both are the identity map."""
    rng = np.random.default_rng(1)
    mesh, people = world.head_mesh(), world.make_subjects(2, rng)
    points = world.face_points(rng)
    novel = world.draw_sample(mesh, people, points, rng, "novel", False)
    frontal = world.draw_sample(mesh, people, points, rng, "frontal", False)
    latents = {"target_latents": torch.zeros(1)}
    rays = {
        (kind, convention): world.sample_tensors(sample, latents, convention)["ray_latents"]
        for kind, sample in (("novel", novel), ("frontal", frontal))
        for convention in world.RAY_CONVENTIONS
    }
    assert torch.equal(rays["novel", "first-frame"], rays["frontal", "first-frame"])
    assert torch.equal(rays["frontal", "reference"], rays["frontal", "first-frame"])
    assert (rays["novel", "reference"] - rays["frontal", "reference"]).abs().max() > 0.05
    # The frontal camera is the reference camera: its rays start at the origin (zero moment,
    # channels 0-2 of each of the 4 frames packed per latent frame) and the novel one's do not.
    moments = {k: v.reshape(4, 6, *v.shape[1:])[:, :3] for k, v in rays.items()}
    assert moments["frontal", "reference"].abs().max() < 1e-6
    assert moments["novel", "reference"].abs().max() > 0.05


def test_world_samples_are_prepared_samples(tmp_path):
    """The world writes what prepare writes, so train's dataset reads it; the C1 filter leaves
    out exactly the training samples whose camera moves and expression changes."""
    pipe = tiny_pipeline(0, code_type="blendshapes")
    counts = world.write_world(tmp_path, pipe, train_samples=8, val_samples=6, subjects=3, seed=0)
    assert counts == {"train": 8, "val": 6, "subjects": 3}
    truth = json.loads((tmp_path / "truth.json").read_text())
    for data in ("data", "data-first-frame-rays"):
        train_set = PreparedSamples(tmp_path / data, "train")
        assert len(train_set) == 8 and len(PreparedSamples(tmp_path / data, "val")) == 6
        sample = train_set[0]
        assert set(sample) == PREPARED_KEYS
        assert sample["target_latents"].shape == (16, 3, 8, 8)
        assert sample["ray_latents"].shape == (24, 3, 8, 8)
        filtered = PreparedSamples(tmp_path / data, "train", exclude_combined=True)
        combined = {
            name
            for name, fact in truth.items()
            if fact["split"] == "train" and fact["kind"] == "moving" and fact["changes_expression"]
        }
        assert {row["id"] for row in filtered.rows} == {r["id"] for r in train_set.rows} - combined
    # The known expression is the code: jawOpen and both eye blinks.
    row = PreparedSamples(tmp_path / "data", "val")
    assert set(np.nonzero(row[0]["blendshapes"].abs().sum(0).numpy())[0]) <= {9, 10, 25}
    # Held-out samples cover every kind, with and without an expression change.
    held_out = [f for f in truth.values() if f["split"] == "val"]
    assert {(f["kind"], f["changes_expression"]) for f in held_out} == {
        (kind, change) for kind in world.KINDS for change in (True, False)
    }


# "Clearly worse": a condition the model ignores gives a swap ratio of 1.000 +- 0.0003 (the C2
# model's normals, the expression in EXPERIMENTS.md), so 1% more error is well clear of it.
MARGIN = 1.01
SHORT_STEPS = 300


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """The experiment command, short: the full model only, trained for a few minutes."""
    from factorportrait.cli.main import main

    out = tmp_path_factory.mktemp("toy-world") / "run"
    arguments = ["toy-world", "--out", str(out), "--seed", "0", "--variants", "full"]
    sizes = ["--steps", str(SHORT_STEPS), "--train-samples", "160", "--val-samples", "24"]
    assert main(arguments + sizes) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "factor",
    [
        "reference",
        "normals",
        "rays",
        pytest.param(
            "expression",
            marks=pytest.mark.xfail(
                strict=True,
                reason="the small model does not learn expression in a few CPU minutes "
                "(EXPERIMENTS.md: findings); strict, so the day it does, this says so",
            ),
        ),
    ],
)
def test_toy_world_learns_each_factor(short_run, factor):
    """Held-out targets generated with their own conditions are closer to the truth than with
    this one condition swapped for another held-out sample's (EXPERIMENTS.md has the long run,
    its margins and the noise across seeds)."""
    ratios = short_run["swap_ratio"]
    assert set(ratios) == {"reference", "normals", "rays", "expression"}
    assert ratios[factor] > MARGIN, f"swapping the {factor} is not clearly worse: {ratios}"
