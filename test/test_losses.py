"""Supervised and self-supervised losses; warping a synthetic pair by its exact disparity."""
import numpy as np
import pytest
import torch

from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.normalisation import normalise
from ros2_stereo_depth.training.losses import (
    photometric_error, self_supervised_loss, self_supervised_terms, smoothness_loss, supervised_loss, unnormalise,
    visible_mask, warp_right_to_left)


def tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array))[None, None].float()


@pytest.fixture(scope="module")
def sample():
    # No photometric changes: the right image is exactly the left one seen from the right.
    # Textured surfaces without thin structures (most pixels next to a depth edge) or repeats
    # (a wrong disparity of one period matches as well as the right one).
    params = SceneParams(96, 128, 24.0, textureless_prob=0.0, thin_structure_prob=0.0, repetitive_prob=0.0)
    return SyntheticStereo(params, seed=0, photometric=None)[0]


class FixedModel(torch.nn.Module):
    """Stands in for the network: the given left disparity for (left, right), and for the mirrored
    swapped pair the mirrored right-view disparity (what a perfect network would answer)."""

    def __init__(self, left, disparity_left, disparity_right):
        super().__init__()
        self.left, self.d_left, self.d_right = left, disparity_left, disparity_right

    def forward(self, left, right):
        if torch.equal(left, self.left):
            return {"disparity": self.d_left}
        return {"disparity": torch.flip(self.d_right, dims=[3])}


def test_supervised_loss_zero_when_perfect_and_grows():
    gt = torch.rand(2, 1, 8, 8) * 20
    valid = torch.rand(2, 1, 8, 8) > 0.3
    losses = [float(supervised_loss({"disparity": gt + e, "disparity_coarse": gt + e}, gt, valid)) for e in (0, 0.5, 2, 8)]
    assert losses[0] == 0.0 and losses == sorted(losses) and len(set(losses)) == 4
    # Errors only on invalid pixels do not count.
    wrong_where_invalid = gt + 5 * (~valid).float()
    assert float(supervised_loss({"disparity": wrong_where_invalid}, gt, valid)) == 0.0


def test_unnormalise_inverts_normalise():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    back = unnormalise(torch.from_numpy(normalise(rgb)))[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, rgb / 255.0, atol=1e-6)


def test_warp_by_integer_shift_is_exact():
    right = torch.rand(1, 3, 4, 10)
    left = torch.zeros_like(right)
    left[..., 3:] = right[..., :-3]  # left(x) = right(x - 3)
    warped = warp_right_to_left(right, torch.full((1, 1, 4, 10), 3.0))
    torch.testing.assert_close(warped[..., 3:], left[..., 3:])


def test_warping_ground_truth_reconstructs_left_in_visible_pixels(sample):
    left, right = (unnormalise(torch.from_numpy(normalise(im))) for im in (sample.left, sample.right))
    visible = ~torch.from_numpy(sample.occluded)
    def error(disparity):
        return (warp_right_to_left(right, disparity) - left).abs().mean(dim=1)[0][visible].mean().item()
    exact = error(tensor(sample.disparity_px))
    assert exact < 0.01  # bilinear resampling of the rendered texture only
    assert error(tensor(sample.disparity_px) + 2.0) > 5 * exact
    assert error(torch.zeros(1, 1, 96, 128)) > 5 * exact


def test_visible_mask_finds_the_occlusions(sample):
    mask = visible_mask(tensor(sample.disparity_px), tensor(sample.disparity_right_px))[0, 0].numpy()
    assert sample.occluded.mean() > 0.02  # the scene has occlusions to find
    assert (mask == ~sample.occluded).mean() > 0.97


def test_left_right_consistency_does_not_pull_occluded_pixels_to_the_occluder(sample):
    """An occluded left pixel lands on the occluder in the right view. Counting it in the LR term would
    score the true disparity by the occluder's gap (1.70 px on this scene) and a disparity fattened to
    the occluder's (1.58 px) as better; over the visible pixels the truth is consistent and wins."""
    left, right = (unnormalise(torch.from_numpy(normalise(im))) for im in (sample.left, sample.right))
    truth, truth_right = tensor(sample.disparity_px), tensor(sample.disparity_right_px)
    occluded = torch.from_numpy(sample.occluded)[None, None]
    assert float(occluded.float().mean()) > 0.1
    fattened = torch.where(occluded, warp_right_to_left(truth_right, truth), truth)
    true_terms = self_supervised_terms(left, right, truth, truth_right)
    fattened_terms = self_supervised_terms(left, right, fattened, truth_right)
    assert float(true_terms["lr_consistency"]) < 0.1  # measured 0.03 px: bilinear sampling only
    assert float(fattened_terms["lr_consistency"]) > 10 * float(true_terms["lr_consistency"])  # measured 1.5 px


def test_terms_are_zero_for_identical_images_and_zero_disparity():
    image = torch.rand(1, 3, 16, 20)
    zero = torch.zeros(1, 1, 16, 20)
    terms = self_supervised_terms(image, image, zero, zero)
    assert float(terms.pop("visible_fraction")) == 1.0  # zero disparity: every pixel lands on itself
    assert all(abs(float(v)) < 1e-6 for v in terms.values()), terms  # SSIM is 1 up to rounding
    assert float(photometric_error(image, image).abs().max()) < 1e-6
    assert float(photometric_error(image, torch.rand(1, 3, 16, 20)).mean()) > 0.1
    assert float(smoothness_loss(torch.full((1, 1, 16, 20), 7.0), image)) == 0.0
    assert float(smoothness_loss(torch.rand(1, 1, 16, 20) * 7, image)) > 0.0


def test_smoothness_is_cheaper_at_image_edges():
    disparity = torch.zeros(1, 1, 8, 8)
    disparity[..., 4:] = 10.0  # a step at x = 4
    flat, edge = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    edge[..., 4:] = 1.0  # the image has an edge at the same place
    assert float(smoothness_loss(disparity, edge)) < 0.5 * float(smoothness_loss(disparity, flat))


def test_self_supervised_loss_grows_with_the_disparity_error(sample):
    left, right = (torch.from_numpy(normalise(im)) for im in (sample.left, sample.right))
    truth_left, truth_right = tensor(sample.disparity_px), tensor(sample.disparity_right_px)
    losses = []
    for offset in (0.0, 1.0, 3.0, 6.0):
        prediction = truth_left + offset
        model = FixedModel(left, prediction, truth_right)
        losses.append(float(self_supervised_loss(model, left, right, {"disparity": prediction})))
    assert losses == sorted(losses) and losses[1] > 1.5 * losses[0], losses


def test_self_supervised_loss_trains_the_network():
    """A real (tiny) network: finite loss, gradients reach the features, right pass is gradient-free."""
    from ros2_stereo_depth.config import get_config
    from ros2_stereo_depth.model import StereoNet
    with torch.random.fork_rng():  # seeded; the global RNG is restored after
        torch.manual_seed(0)
        net = StereoNet(get_config("tiny").with_overrides(max_disparity=32)).train()
        left, right = torch.randn(1, 3, 32, 64), torch.randn(1, 3, 32, 64)
    outputs = net(left, right)
    loss = self_supervised_loss(net, left, right, outputs)
    loss.backward()
    assert torch.isfinite(loss.detach()) and float(loss.detach()) > 0
    grad = net.features.stem[0][0].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


@pytest.mark.parametrize("index", [0, 1, 2])
def test_scale_augmented_samples_keep_exact_ground_truth(index):
    """render_scaled: the resized ground truth still maps the right image onto the left one."""
    params = SceneParams(96, 128, 24.0, textureless_prob=0.0)
    s = SyntheticStereo(params, seed=5, photometric=None, scale_range=(0.6, 1.6))[index]
    assert s.left.shape == (96, 128, 3) and s.disparity_px.shape == (96, 128)
    assert 0.0 <= s.disparity_px.min() and s.disparity_px.max() <= 24.0
    left, right = (unnormalise(torch.from_numpy(normalise(im))) for im in (s.left, s.right))
    visible = ~torch.from_numpy(s.occluded)
    def error(disparity):
        return (warp_right_to_left(right, disparity) - left).abs().mean(dim=1)[0][visible].mean().item()
    exact = error(tensor(s.disparity_px))
    assert exact < 0.03 and error(tensor(s.disparity_px) + 2.0) > 2 * exact
