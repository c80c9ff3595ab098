"""The toy world (EXPERIMENTS.md): its pictures follow the factors it is told, its samples are
what ``prepare`` writes, and a short run of the experiment shows each condition carrying its
factor (the slow test)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from factorportrait.pipelines.checkpoints import tiny_pipeline
from factorportrait.toy_world import head, samples, world
from factorportrait.training.data import PreparedSamples
from factorportrait.viewpoint import intrinsics_from_fov, invert_rigid, orbit_c2w

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
    mesh = head.head_mesh()
    subject = head.make_subjects(1, rng)[0]
    frames = 2
    K = np.repeat(intrinsics_from_fov(30.0, head.SIZE, head.SIZE)[None], frames, 0)
    return mesh, subject, K


def _render(scene, *, yaw=(0.0, 0.0), azimuth=(0.0, 0.0), mouth=(0.0, 0.0), eyes=(0.0, 0.0)):
    mesh, subject, K = scene
    pose = head.rotation_yaw_pitch(np.array(yaw), np.zeros(2))
    c2w = orbit_c2w(np.array(azimuth), 0.0, world.DISTANCE_CM)
    return head.render(mesh, subject, pose, c2w, K, np.array(mouth), np.array(eyes))


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
    assert rows.max() > head.SIZE // 2


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
    mesh, people = head.head_mesh(), head.make_subjects(2, rng)
    points = head.face_points(rng)
    novel = world.draw_sample(mesh, people, points, rng, "novel", False)
    frontal = world.draw_sample(mesh, people, points, rng, "frontal", False)
    latents = {"target_latents": torch.zeros(1)}
    rays = {
        (kind, convention): samples.sample_tensors(sample, latents, convention)["ray_latents"]
        for kind, sample in (("novel", novel), ("frontal", frontal))
        for convention in samples.RAY_CONVENTIONS
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
    counts = samples.write_world(tmp_path, pipe, train_samples=8, val_samples=6, subjects=3, seed=0)
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
    # Prepare's expression statistics beside each index (train reads them, measures nothing).
    for data in ("data", "data-first-frame-rays", "data-shuffled-codes"):
        stats = json.loads((tmp_path / data / "expression_stats.json").read_text())
        assert stats["samples"] == 8 and {"blendshapes", "landmarks"} <= set(stats)
    # The noise floor: every training sample has another's codes, held-out ones their own.
    plain = PreparedSamples(tmp_path / "data", "train")
    shuffled = PreparedSamples(tmp_path / "data-shuffled-codes", "train")
    codes = [plain[i]["blendshapes"] for i in range(8)]
    for i in range(8):
        moved = shuffled[i]["blendshapes"]
        assert not torch.equal(moved, codes[i]) and any(torch.equal(moved, c) for c in codes)
        assert torch.equal(shuffled[i]["target_latents"], plain[i]["target_latents"])
    val = PreparedSamples(tmp_path / "data-shuffled-codes", "val")
    assert torch.equal(
        val[0]["blendshapes"], PreparedSamples(tmp_path / "data", "val")[0]["blendshapes"]
    )
    # The paired measure's clips: each held-out clip again with one factor from its partner,
    # which changes that factor's conditions and no other.
    from safetensors.torch import load_file

    held_out = PreparedSamples(tmp_path / "data", "val")
    for index, row in enumerate(held_out.rows):
        partners = truth[row["id"]]["partners"]
        assert set(partners) == set(world.FACTOR_FIELDS)
        for factor, fields in world.FACTOR_FIELDS.items():
            other = load_file(
                str(tmp_path / "data" / "counterfactual" / factor / f"{row['id']}.safetensors")
            )
            own = held_out[index]
            assert not torch.equal(other["target_latents"], own["target_latents"]), factor
            for key in PREPARED_KEYS - {"target_latents"}:
                same = torch.allclose(other[key], own[key], atol=1e-5)
                assert same != (key in fields), (factor, key)
    # The known expression is the code: jawOpen and both eye blinks.
    row = PreparedSamples(tmp_path / "data", "val")
    assert set(np.nonzero(row[0]["blendshapes"].abs().sum(0).numpy())[0]) <= {9, 10, 25}
    # Held-out samples cover every kind, with and without an expression change.
    held_out = [f for f in truth.values() if f["split"] == "val"]
    assert {(f["kind"], f["changes_expression"]) for f in held_out} == {
        (kind, change) for kind in world.KINDS for change in (True, False)
    }


def test_c3_codes_are_in_the_heads_own_frame():
    """The toy world's landmark codes (C3) are as the real ones: x, y on the head in units of
    the face's size, before any pose or camera (so nothing but the expression moves them); the
    points that do not move with expression are 0."""
    points = head.face_points(np.random.default_rng(0))
    codes = head.crop_landmarks(points, np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    assert codes.shape == (2, head.LANDMARKS, 2)
    moved = np.abs(codes[1] - codes[0]).max(axis=1)
    assert (moved[:80] > 0).sum() >= 60 and moved.max() > 0.2
    np.testing.assert_array_equal(codes[:, 80:], 0.0)
    # A larger mouth and eyes (worlds b-d) move them more.
    larger = head.crop_landmarks(points, np.array([0.0, 1.0]), np.array([0.0, 1.0]), 1.5)
    assert np.abs(larger[1] - larger[0]).max() > 1.3 * moved.max()


def test_graded_worlds_hold_what_they_say():
    """World (a) holds the subject, the head and the camera, so only the expression differs
    between its clips; (d) varies them all."""
    rng = np.random.default_rng(3)
    spec = world.WORLDS["a"]
    draws = [world.draw_clip(1, rng, "frontal", bool(i % 2), spec) for i in range(4)]
    for draw in draws:
        np.testing.assert_array_equal(draw.head_pose, np.tile(np.eye(4), (world.FRAMES, 1, 1)))
        np.testing.assert_allclose(draw.c2w, draws[0].c2w)
        np.testing.assert_allclose(draw.reference_c2w, draw.c2w[0])
    assert spec.varies(1) == {
        "reference": False,
        "head_pose": False,
        "camera": False,
        "expression": True,
    }
    assert all(world.WORLDS["d"].varies(8).values())
    # A partner's cameras are put relative to the clip's own reference camera: the rays of the
    # clip with the partner's cameras are the partner's.
    spec = world.WORLDS["d"]
    one, two = (world.draw_clip(4, rng, "novel", False, spec) for _ in range(2))
    moved = world.with_partners_factor(one, two, "camera")
    relative = invert_rigid(moved.reference_c2w) @ moved.c2w
    np.testing.assert_allclose(relative, invert_rigid(two.reference_c2w) @ two.c2w, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(moved.c2w[:, :3, 3], axis=1), spec.distance_cm)


def test_paired_beta_is_one_for_a_copy_and_zero_for_a_blind_model():
    from factorportrait.toy_world.experiment import paired_beta

    generator = torch.Generator().manual_seed(0)
    truth_a, truth_b = (torch.randn(12, 16, 3, 8, 8, generator=generator) for _ in range(2))
    exact = paired_beta(truth_a, truth_b, truth_a, truth_b)
    assert exact["mean"] == pytest.approx(1.0) and exact["se"] == pytest.approx(0.0, abs=1e-6)
    blind = torch.randn(12, 16, 3, 8, 8, generator=generator)
    assert paired_beta(blind, blind, truth_a, truth_b)["mean"] == 0.0
    half = paired_beta(0.5 * truth_a, 0.5 * truth_b, truth_a, truth_b)
    assert half["mean"] == pytest.approx(0.5) and half["n"] == 12


# "Clearly worse": a condition the model ignores gives a swap ratio of 1.000 +- 0.0003 (the C2
# model's normals in EXPERIMENTS.md), so 1% more error is well clear of it. Expression is
# tested in world (a), below: in this world the short run does not learn it (EXPERIMENTS.md).
MARGIN = {"reference": 1.01, "rays": 1.01}
# Head pose (the normals) is the weakly learnt factor here, and 300 steps is short: its swap
# ratio was 1.0101 before issue 32 changed how training draws its noise and 1.0056 after (the
# reference 1.120 both times, the rays 1.058 and 1.072), so the 1% margin was met by 0.0001 and
# by luck. Its bar is ten times the spread of an ignored condition instead, and the same run's
# C2 model (no normal maps: 1.000) is checked to fall below it.
NORMALS_MARGIN = 1.003
SHORT_STEPS = 300


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """The experiment command, short: the full model only, trained for a few minutes."""
    from factorportrait.cli.main import main

    out = tmp_path_factory.mktemp("toy-world") / "run"
    variants = ["--variants", "full", "c2-no-normals"]
    arguments = ["toy-world", "--out", str(out), "--seed", "0", *variants]
    sizes = ["--steps", str(SHORT_STEPS), "--train-samples", "160", "--val-samples", "24"]
    assert main(arguments + sizes) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("factor", ["reference", "normals", "rays"])
def test_toy_world_learns_each_factor(short_run, factor):
    """Held-out targets generated with their own conditions are closer to the truth than with
    this one condition swapped for another held-out sample's (EXPERIMENTS.md has the long run,
    its margins and the noise across seeds)."""
    ratios = short_run["swap_ratio"]
    assert set(ratios) == {"reference", "normals", "rays", "expression"}
    margin = NORMALS_MARGIN if factor == "normals" else MARGIN[factor]
    assert ratios[factor] > margin, f"swapping the {factor} is not clearly worse: {ratios}"


def test_the_normals_bar_is_not_met_by_a_model_without_normal_maps(short_run):
    """The check above sees what it forbids: the C2 model, trained the same way without normal
    maps, cannot be hurt by swapping them."""
    ratios = short_run["variants"]["c2-no-normals"]["swap_ratio"]
    assert ratios["normals"] <= NORMALS_MARGIN, ratios


# World (a) of the graded worlds, short: one subject, a still frontal head, a held camera.
EXPRESSION_STEPS = 200


@pytest.mark.slow
def test_toy_world_learns_expression_where_it_is_all_that_changes(tmp_path):
    """In world (a) the full model renders the expression its codes carry: the paired measure
    (each held-out clip generated again with a partner's expression, the same noise) moves the
    generated latents along the true change, beta_expression above zero by 3 standard errors
    (EXPERIMENTS.md: the graded worlds; seeds 0 and 1 gave 5.8 and 5.9 SE at these settings),
    and swapping the codes makes the target worse."""
    from factorportrait.cli.main import main

    out = tmp_path / "run"
    arguments = ["toy-world", "--world", "a", "--out", str(out), "--seed", "0"]
    sizes = ["--steps", str(EXPRESSION_STEPS), "--train-samples", "160", "--val-samples", "24"]
    assert main([*arguments, "--variants", "full", *sizes]) == 0
    results = json.loads((out / "results.json").read_text())
    beta = results["beta"]["expression"]
    assert set(results["beta"]) == {"expression"}  # world (a) holds every other factor
    assert beta["mean"] > 3 * beta["se"], beta
    assert results["swap_ratio"]["expression"] > 1.005, results["swap_ratio"]
