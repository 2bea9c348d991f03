"""The network input normalisation: the table look-up equals the arithmetic definition."""
import numpy as np
import pytest

from ros2_stereo_depth.normalisation import MEAN_RGB, STD_RGB, normalise


def test_every_level_of_every_channel_matches_the_definition():
    levels = np.arange(256, dtype=np.uint8)
    rgb = np.stack([levels, levels[::-1], np.roll(levels, 77)], axis=-1).reshape(16, 16, 3)
    expected = (rgb.astype(np.float64) / 255.0 - np.asarray(MEAN_RGB)) / np.asarray(STD_RGB)
    out = normalise(rgb)
    assert out.shape == (1, 3, 16, 16) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[0].transpose(1, 2, 0), expected, atol=1e-6)


def test_views_give_the_values_of_their_copies():
    rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for view in (rgb[:, ::-1], rgb[::2, 5:41], rgb[:, :, ::-1]):
        np.testing.assert_array_equal(normalise(view), normalise(np.ascontiguousarray(view)))


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
                                 np.zeros((4, 4, 4), np.uint8)])
def test_refuses_what_is_not_uint8_rgb(bad):
    with pytest.raises(ValueError, match="uint8 RGB"):
        normalise(bad)
