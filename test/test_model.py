"""The network's stages and its weights files."""
import json

import numpy as np
import pytest
import torch

from ros2_stereo_depth.config import CONFIGS, ModelConfig, get_config
from ros2_stereo_depth.model import StereoNet
from ros2_stereo_depth.model.deploy import (HALF_STAGES, channels_last_net, count_batchnorms, fold_batchnorm,
                                            half_precision_net, half_stages)
from ros2_stereo_depth.model.cost_volume import GroupwiseCorrelation, reference_groupwise_correlation
from ros2_stereo_depth.model.regression import SoftArgminRegression
from ros2_stereo_depth.model.upsampling import ConvexUpsampling
from ros2_stereo_depth.artifacts.weights import load_model, save_weights


@pytest.mark.parametrize("groups,disparities,width", [(4, 8, 20), (2, 16, 16), (1, 3, 7)])
def test_skewed_cost_volume_equals_per_disparity_loop(groups, disparities, width):
    rng = torch.Generator().manual_seed(0)  # a local generator: the global RNG is left alone
    left, right = torch.randn(2, 8, 5, width, generator=rng), torch.randn(2, 8, 5, width, generator=rng)
    fast = GroupwiseCorrelation(groups, disparities)(left, right)
    slow = reference_groupwise_correlation(left, right, groups, disparities)
    assert fast.shape == (2, groups, disparities, 5, width)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


def test_cost_volume_peaks_at_the_true_shift():
    """A right feature map that is the left one shifted by 3 px correlates best at d = 3."""
    left = torch.randn(1, 64, 4, 32, generator=torch.Generator().manual_seed(1))
    right = torch.roll(left, shifts=-3, dims=3)  # right(x) = left(x + 3)
    volume = GroupwiseCorrelation(4, 8)(left, right)
    best = volume.mean(dim=1)[0, :, :, 8:-3].argmax(dim=0)
    assert torch.all(best == 3)


def test_soft_argmin_is_sub_pixel_and_scaled():
    regression = SoftArgminRegression(num_disparities=8, step_px=4.0)
    cost = torch.full((1, 8, 1, 1), -1e4)
    cost[0, 2], cost[0, 3] = 0.0, 0.0  # equal mass on bins 2 and 3 -> 2.5 bins = 10 px
    disparity, confidence = regression(cost)
    assert disparity.item() == pytest.approx(10.0, abs=1e-4)
    assert confidence.item() == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_shapes_and_ranges(name):
    config = get_config(name)
    net = StereoNet(config).eval()
    h, w = config.size_multiple * 2, config.max_disparity + config.size_multiple
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        out = net(x, x)
    assert out["disparity"].shape == (1, 1, h, w)
    assert out["confidence"].shape == (1, 1, h, w)
    assert float(out["disparity"].min()) >= 0.0
    assert float(out["disparity"].max()) <= config.max_disparity
    assert 0.0 <= float(out["confidence"].min()) and float(out["confidence"].max()) <= 1.0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_folded_batchnorms_give_the_same_disparities(name):
    """Inference's folded copy (torch backend): no batch norm left, the original untouched, the same
    outputs. Random running statistics, so that a fold that ignored them (or the affine part) shows."""
    config = get_config(name)
    torch.manual_seed(1)
    net = StereoNet(config).eval()
    for module in net.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert count_batchnorms(net) > 0 and count_batchnorms(folded) == 0
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    h, w = config.size_multiple * 2, config.max_disparity + config.size_multiple
    left = torch.rand(1, 3, h, w)
    right = torch.roll(left, -5, dims=3)
    with torch.no_grad():
        expected, got = net(left, right), folded(left, right)
    for key in ("disparity", "confidence"):
        assert float((expected[key] - got[key]).abs().max()) < 1e-3, key
    assert float(expected["disparity"].std()) > 0.01  # not a constant map that any fold would reproduce


def test_half_stages_convert_in_place_and_half_precision_net_copies():
    """The torch backend converts its own folded copy in place (one copy per swap); the ONNX export's
    half_precision_net copies first and leaves the caller's network fp32."""
    net = StereoNet(get_config("tiny"))
    copied = half_precision_net(net)
    assert copied is not net and all(p.dtype == torch.float32 for p in net.parameters())
    folded = fold_batchnorm(net)
    assert half_stages(folded) is folded and not folded.training
    for converted in (copied, folded):
        for name, module in converted.named_children():
            dtypes = {p.dtype for p in module.parameters()}
            assert dtypes == ({torch.float16} if name in HALF_STAGES else {torch.float32}) or not dtypes, name


@pytest.mark.parametrize("name", ["tiny", "fast"])
def test_channels_last_copy_gives_the_same_disparities(name):
    """The torch backend's CUDA layout (model/deploy.py channels_last_net), checked on the CPU: every
    convolution's weights and input channels-last, and the same outputs as the NCHW network."""
    net = fold_batchnorm(load_model(name).net)  # trained weights: a random network's output is flat
    reference = fold_batchnorm(net)
    converted = channels_last_net(net)
    assert converted is net
    seen = []

    def record(module, inputs):
        layout = torch.channels_last if inputs[0].dim() == 4 else torch.channels_last_3d
        seen.append(inputs[0].is_contiguous(memory_format=layout) and module.weight.is_contiguous(memory_format=layout))

    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d,
                                                        torch.nn.ConvTranspose3d))]
    handles = [m.register_forward_pre_hook(record) for m in convs]  # after the layout hooks: sees their result
    generator = torch.Generator().manual_seed(0)
    left = torch.rand(1, 3, 96, 128, generator=generator) * 2 - 1
    right = torch.roll(left, -6, dims=3)  # a textured pair 6 px apart
    with torch.no_grad():
        expected, got = reference(left, right), net(left, right)
    for handle in handles:
        handle.remove()
    assert len(seen) >= len(convs) and all(seen)
    for key in ("disparity", "confidence"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-4, rtol=1e-4)
    assert float(expected["disparity"].std()) > 0.01


def test_config_rejects_sizes_the_graph_cannot_take():
    config = get_config("tiny")
    with pytest.raises(ValueError, match="multiples of 16"):
        config.check_size(100, 256)
    with pytest.raises(ValueError, match="exceeds the input width"):
        config.check_size(64, 64, 128)
    with pytest.raises(ValueError, match="unknown config"):
        get_config("huge")
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**config.to_dict(), "colour": 1})


def test_weights_round_trip_and_sidecar(tmp_path):
    net = StereoNet(get_config("tiny"))
    for p in net.parameters():
        torch.nn.init.normal_(p)
    path = save_weights(net, tmp_path / "w.safetensors", {"steps": 7})
    loaded = load_model(weights=path)
    assert loaded.config == get_config("tiny")
    assert json.loads(path.with_suffix(".json").read_text())["info"] == {"steps": 7}
    for (k, a), (_, b) in zip(net.state_dict().items(), loaded.net.state_dict().items()):
        assert torch.equal(a, b), k
    assert len(loaded.weights_sha256) == 64
    with pytest.raises(ValueError, match="weights are for config 'tiny', not 'fast'"):
        load_model("fast", path)
    # max_disparity changes only the cost volume size, not the weights
    assert load_model(weights=path, max_disparity=32).config.max_disparity == 32


def test_pickled_checkpoints_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="safetensors"):
        load_model("tiny", path)


def test_weights_of_another_shape_are_refused(tmp_path):
    path = save_weights(StereoNet(get_config("tiny")), tmp_path / "tiny.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["config"], meta["architecture"] = "accurate", get_config("accurate").architecture()
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises((ValueError, RuntimeError)):
        load_model(weights=path)


def test_shared_feature_weights_see_both_images_identically():
    """Swapping the images must swap the features: one extractor for both views."""
    net = StereoNet(get_config("tiny")).eval()
    a, b = torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        fa, fb = net.features(torch.cat([a, b])).chunk(2)
        fb2, fa2 = net.features(torch.cat([b, a])).chunk(2)
    np.testing.assert_allclose(fa.numpy(), fa2.numpy(), atol=1e-5)
    np.testing.assert_allclose(fb.numpy(), fb2.numpy(), atol=1e-5)


def test_convex_upsampling_starts_as_box_and_keeps_constants():
    """At its initialisation every fine pixel averages its 3x3 coarse neighbours equally: a constant
    disparity stays exactly constant, and the output is factor times larger on each side."""
    up = ConvexUpsampling(feature_channels=8, factor=4).eval()
    disparity = torch.full((2, 1, 5, 7), 12.5)
    with torch.no_grad():
        fine = up(disparity, torch.randn(2, 8, 5, 7))
    assert fine.shape == (2, 1, 20, 28)
    torch.testing.assert_close(fine, torch.full_like(fine, 12.5))


@pytest.mark.parametrize("neighbour,shift", [(4, (0, 0)), (3, (0, -1)), (1, (-1, 0)), (8, (1, 1))])
def test_convex_upsampling_can_pick_one_neighbour_and_keep_edges_sharp(neighbour, shift):
    """Weights that put all mass on one of the 3x3 neighbours (row-major, 4 = centre) copy that
    coarse pixel into the whole fine cell: a depth edge stays a step, with no blended values."""
    f = 2
    up = ConvexUpsampling(feature_channels=4, factor=f).eval()
    with torch.no_grad():
        bias = torch.full((9, f * f), -50.0)
        bias[neighbour] = 50.0
        up.mask[-1].bias.copy_(bias.reshape(-1))
        coarse = torch.zeros(1, 1, 4, 6)
        coarse[..., :, 3:] = 40.0  # a vertical edge between columns 2 and 3
        coarse[..., 2, :] += 1.0  # and a row that differs, so vertical shifts show too
        fine = up(coarse, torch.randn(1, 4, 4, 6))
    dy, dx = shift
    padded = torch.nn.functional.pad(coarse, (1, 1, 1, 1), mode="replicate")
    source = padded[..., 1 + dy:1 + dy + 4, 1 + dx:1 + dx + 6]
    expected = source.repeat_interleave(f, dim=2).repeat_interleave(f, dim=3)
    torch.testing.assert_close(fine, expected, atol=1e-4, rtol=0)
    assert set(np.unique(np.round(fine.numpy(), 3))) <= {0.0, 1.0, 40.0, 41.0}
