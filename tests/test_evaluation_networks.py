"""The metrics that need a network the user supplies (LPIPS, FVD, ArcFace CSIM), tested with
tiny random networks written here: nothing is downloaded. Known answers come from the
formulas: LPIPS of unit feature vectors by hand, the Fréchet distance of Gaussians in closed
form, and the ArcFace alignment putting five marked points where ArcFace's template has them."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from factorportrait.errors import InputError
from factorportrait.evaluation import harness, metrics
from factorportrait.evaluation.identity import (
    ARCFACE_POINTS,
    ArcFaceEmbedder,
    arcface_crop,
    iresnet,
    load_arcface,
)
from factorportrait.evaluation.realism import (
    LPIPS,
    VGG16_LAYOUT,
    I3DFeatures,
    fvd,
    lpips_distance,
)
from factorportrait.io import write_video

# -- LPIPS ----------------------------------------------------------------------------------------


def test_lpips_formula_on_unit_features_by_hand():
    """One layer, the features the pixels themselves: a red image against a green one has unit
    features (1,0,0) and (0,1,0), so LPIPS = w_red + w_green; any image against itself 0; and
    features are normalised, so a darker red is as far from green."""
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    green = torch.zeros(1, 3, 4, 4)
    green[:, 1] = 1.0
    weights = [torch.tensor([1.0, 2.0, 3.0])]
    layers = lambda x: [x]  # noqa: E731
    assert lpips_distance(layers, weights, red, green)[0] == pytest.approx(3.0)
    assert lpips_distance(layers, weights, red * 0.2, green)[0] == pytest.approx(3.0)
    assert lpips_distance(layers, weights, red, red)[0] == 0.0
    # Two layers add; half of the pixels differing halves a layer's mean.
    half = red.clone()
    half[..., :2] = green[..., :2]
    two = lpips_distance(lambda x: [x, x], [weights[0], torch.ones(3)], red, half)
    assert two[0] == pytest.approx(3.0 / 2 + 2.0 / 2)


def _tiny_lpips_file(path, *, zero_heads=False):
    """LPIPS-VGG weights in the real names, with 2-4 channels per layer instead of 64-512."""
    torch.manual_seed(0)
    state, channels, index, widths = {}, 3, 0, []
    for item in VGG16_LAYOUT:
        if item == "M":
            index += 1
            continue
        width = max(2, item // 128)
        state[f"features.{index}.weight"] = torch.randn(width, channels, 3, 3) * 0.5
        state[f"features.{index}.bias"] = torch.randn(width) * 0.1
        channels, index = width, index + 2
        widths.append(width)
    for layer, width in enumerate([widths[1], widths[3], widths[6], widths[9], widths[12]]):
        heads = torch.zeros(1, width, 1, 1) if zero_heads else torch.rand(1, width, 1, 1)
        state[f"lin{layer}.model.1.weight"] = heads
    save_file(state, str(path))
    return path


def test_lpips_of_an_identity_vgg_on_pure_colours(tmp_path):
    """Every convolution the identity (3 channels, the centre tap 1) less 0.1, every head 1:
    after LPIPS's input scaling pure red is positive (about 2.2) in red only and pure green in
    green only, and stays so through the 13 convolutions, so each of the five ReLU taps holds
    the unit features (1,0,0) and (0,1,0): LPIPS = 5 x (1 + 1) = 10. Taps before the ReLUs
    see the -0.1 of the other channels and give another number."""
    state, index = {}, 0
    identity = torch.zeros(3, 3, 3, 3)
    identity[range(3), range(3), 1, 1] = 1.0
    for item in VGG16_LAYOUT:
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = identity.clone()
        state[f"features.{index}.bias"] = torch.full((3,), -0.1)
        index += 2
    for layer in range(5):
        state[f"lin{layer}.model.1.weight"] = torch.ones(1, 3, 1, 1)
    save_file(state, str(tmp_path / "identity.safetensors"))
    lpips = LPIPS(tmp_path / "identity.safetensors")
    red = np.zeros((1, 16, 16, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros((1, 16, 16, 3), np.uint8)
    green[..., 1] = 255
    np.testing.assert_allclose(lpips(red, green), [10.0], rtol=1e-6)


def test_lpips_network_from_a_weights_file(tmp_path):
    lpips = LPIPS(_tiny_lpips_file(tmp_path / "lpips.safetensors"))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    np.testing.assert_allclose(lpips(a, a), 0, atol=1e-9)
    assert (lpips(a, b) > 0).all()
    np.testing.assert_allclose(lpips(a, b), lpips(b, a), rtol=1e-5)
    np.testing.assert_allclose(lpips(a, b, batch=1), lpips(a, b), rtol=1e-5)  # batching
    silent = LPIPS(_tiny_lpips_file(tmp_path / "zero.safetensors", zero_heads=True))
    np.testing.assert_allclose(silent(a, b), 0, atol=1e-12)  # heads of zero weigh nothing
    save_file({"features.0.weight": torch.zeros(2, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match="lpips-weights"):
        LPIPS(tmp_path / "bad.safetensors")


# -- FVD ------------------------------------------------------------------------------------------


def test_frechet_distance_of_gaussians_in_closed_form():
    """Diagonal covariances commute: d = |m_a - m_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 5.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    distance = metrics.frechet_distance(mean_a, np.diag(a), mean_b, np.diag(b))
    assert distance == pytest.approx(expected)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    covariance = rotation @ np.diag(a) @ rotation.T  # any covariance against itself: 0
    assert metrics.frechet_distance(mean_a, covariance, mean_a, covariance) == pytest.approx(
        0, abs=1e-6
    )


def test_fvd_of_features_shifted_by_a_known_vector():
    features = np.random.default_rng(1).normal(size=(20, 4))
    assert fvd(features, features) == pytest.approx(0, abs=1e-6)
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    assert fvd(features, features + shift) == pytest.approx(shift @ shift)
    with pytest.raises(ValueError, match="two videos"):
        fvd(features[:1], features)


class _TinyI3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, kernel_size=(2, 8, 8), stride=(2, 8, 8))

    def forward(self, video):
        return self.conv(video).mean(dim=(2, 3, 4))


@pytest.fixture
def tiny_i3d(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "i3d.pt2"
    program = torch.export.export(_TinyI3D(), (torch.zeros(1, 3, 4, 224, 224),))
    torch.export.save(program, str(path))
    return path


def test_fvd_through_the_harness_with_a_tiny_i3d(tmp_path, tiny_i3d, landmarker_path):
    """Two results whose videos are their ground truths: the two sets of features are the
    same, so FVD is 0; the per-sample summary points at the aggregate."""
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        video = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
        write_video(tmp_path / f"{name}.mp4", video, 8)
        (tmp_path / f"{name}.ground_truth.mp4").write_bytes((tmp_path / f"{name}.mp4").read_bytes())
        np.savez(tmp_path / f"{name}.conditioning.npz", blendshapes=np.zeros((5, 52)))
    features = I3DFeatures(tiny_i3d, frames=4)
    report = harness.evaluate(
        tmp_path, None, landmarker_path, harness.Measures(fvd_features=features)
    )
    assert report["aggregate"]["fvd"] == pytest.approx(0, abs=1e-6)
    assert "aggregate" in report["samples"][0]["summary"]["fvd"]
    plain = harness.evaluate(tmp_path, None, landmarker_path)
    assert "fvd" not in plain["aggregate"]
    assert plain["samples"][0]["summary"]["fvd"].startswith("skipped")
    assert plain["samples"][0]["summary"]["lpips"].startswith("skipped")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(InputError, match="fvd-i3d"):
        I3DFeatures(tmp_path / "junk.pt")


# -- ArcFace --------------------------------------------------------------------------------------


def _landmarks_at(points):
    """MediaPipe-shaped landmarks (478,3) whose five ArcFace points are ``points`` (5,2): each
    eye's two corners (MediaPipe 33 and 133 on the image's left, 362 and 263 on its right) 3 px
    either side of the eye's point, the nose tip (1) and the mouth corners (61, 291)."""
    landmarks = np.zeros((478, 3))
    landmarks[33, :2], landmarks[133, :2] = points[0] - [3, 0], points[0] + [3, 0]
    landmarks[362, :2], landmarks[263, :2] = points[1] - [3, 0], points[1] + [3, 0]
    landmarks[1, :2], landmarks[61, :2], landmarks[291, :2] = points[2], points[3], points[4]
    return landmarks


def test_arcface_crop_puts_the_five_points_on_arcfaces_template():
    """Five dots on a black image, the face twice ArcFace's size and shifted: in the 112x112
    crop each dot lands on its template point."""
    points = 2 * ARCFACE_POINTS + [20.0, 30.0]
    crop_points = []
    for point in points:
        image = np.zeros((300, 300, 3), np.uint8)
        x, y = np.round(point).astype(int)
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
        crop = arcface_crop(image, _landmarks_at(points)).astype(float).sum(axis=-1)
        ys, xs = np.nonzero(crop > 0)
        weights = crop[ys, xs]
        crop_points.append([np.average(xs, weights=weights), np.average(ys, weights=weights)])
    # The dots were drawn at rounded pixels (up to 0.5 px off, halved in the crop).
    np.testing.assert_allclose(crop_points, ARCFACE_POINTS, atol=0.6)


def test_arcface_weights_file_loads_by_name_and_embeds(tmp_path, pyfeat, tracker):
    from factorportrait.io.media import read_image

    torch.manual_seed(0)
    network = iresnet((1, 2, 1, 1), width=4, embedding=8).eval()
    save_file(network.state_dict(), str(tmp_path / "arcface.safetensors"))
    loaded = load_arcface(tmp_path / "arcface.safetensors")
    assert [len(getattr(loaded, f"layer{i}")) for i in range(1, 5)] == [1, 2, 1, 1]
    photo = read_image(pyfeat / "single_face.jpg")
    landmarks = tracker.track_image(photo).landmarks
    embedder = ArcFaceEmbedder(loaded)
    embedding = embedder.embed(photo, landmarks)
    assert embedding.shape == (8,)
    reference = ArcFaceEmbedder(network).embed(photo, landmarks)  # the weights that were saved
    np.testing.assert_allclose(embedding, reference, rtol=1e-5, atol=1e-6)
    save_file({"conv1.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not an IResNet"):
        load_arcface(tmp_path / "other.safetensors")
