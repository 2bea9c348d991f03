"""The procedural stereo generator: exact, deterministic ground truth."""
import numpy as np

from ros2_stereo_depth.data.synthetic import Layer, SceneParams, SyntheticSequence, SyntheticStereo, render


def test_same_seed_same_sample_other_seed_other_sample():
    params = SceneParams(64, 96, 24.0)
    a, b = SyntheticStereo(params, seed=3)[5], SyntheticStereo(params, seed=3)[5]
    c = SyntheticStereo(params, seed=4)[5]
    assert np.array_equal(a.left, b.left) and np.array_equal(a.disparity_px, b.disparity_px)
    assert not np.array_equal(a.left, c.left)


def test_disparity_range_and_dtypes():
    params = SceneParams(64, 96, 24.0)
    for i in range(5):
        s = SyntheticStereo(params, seed=1)[i]
        assert s.left.dtype == np.uint8 and s.left.shape == (64, 96, 3)
        assert s.disparity_px.dtype == np.float32
        assert 0.0 <= s.disparity_px.min() and s.disparity_px.max() <= 24.0


def test_fronto_parallel_square_has_exact_disparity_and_occlusion():
    """Background at 2 px, a square at 10 px: the right view shows the square 10 px to the left, so
    the left view's background strip x in [32, 40), which lands at x - 2 under it, is occluded."""
    h, w = 40, 80
    canvas = w + 30
    rng = np.random.default_rng(0)
    background = Layer(rng.random((h, canvas, 3), dtype=np.float32), np.ones((h, canvas), np.float32), (2.0, 0.0, 0.0))
    mask = np.zeros((h, canvas), np.float32)
    mask[10:30, 40:60] = 1
    square = Layer(np.ones((h, canvas, 3), np.float32), mask, (10.0, 0.0, 0.0))
    s = render([background, square], h, w)
    assert np.all(s.disparity_px[10:30, 40:60] == 10.0)
    assert np.all(s.disparity_px[:10] == 2.0)
    assert np.all(s.right[10:30, 30:50] == 255) and np.all(s.left[10:30, 40:60] == 255)
    # background pixels just right of the square's left edge in the right view: hidden there
    assert s.occluded[15, 32:40].all()
    assert not s.occluded[15, 20:32].any() and not s.occluded[15, 60:78].any()
    assert s.occluded[:, :2].all()  # they leave the right image
    assert not s.occluded[10:30, 40:60].any()


def test_slanted_plane_disparity_is_affine():
    h, w = 32, 64
    plane = Layer(np.full((h, w + 40, 3), 0.5, np.float32), np.ones((h, w + 40), np.float32), (5.0, 0.1, 0.2))
    s = render([plane], h, w)
    ys, xs = np.mgrid[0:h, 0:w]
    np.testing.assert_allclose(s.disparity_px, 5.0 + 0.1 * xs + 0.2 * ys, atol=1e-4)


def test_sequence_moves_between_frames():
    seq = SyntheticSequence(SceneParams(48, 64, 16.0), seed=2)
    f0, f1 = seq.frame(0), seq.frame(5)
    assert not np.array_equal(f0.disparity_px, f1.disparity_px)
    assert np.array_equal(seq.frame(5).left, f1.left)
