"""Local matching around the network's disparity (inference/local_matching.py and the census matching, SGBM
fusion and disparity resizing it runs) on pairs with exact disparity."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticSequence
from ros2_stereo_depth.inference.base import StereoResult, infer_at_image_size
from ros2_stereo_depth.inference.census_matching import CENSUS_OFFSETS, census_transform, refine_disparity
from ros2_stereo_depth.inference.local_matching import NO_MATCHING, LocalMatching
from ros2_stereo_depth.inference.sgbm_fusion import fuse_sgbm, sgbm_matches


def textured_shift(disparity_px: int, height: int = 96, width: int = 160, blur_px: float = 1.0, seed: int = 0):
    """A fronto-parallel textured plane at an integer disparity: right(x - d) = left(x) exactly."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height, width + disparity_px, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), blur_px)
    texture = np.clip((texture - texture.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    return texture[:, :width].copy(), texture[:, disparity_px:disparity_px + width].copy()


@pytest.fixture(scope="module")
def scene():
    """A layered synthetic scene (planes, slants, occlusions) with exact disparity."""
    return SyntheticSequence(SceneParams(height=192, width=256, max_disparity_px=48.0), seed=5).frame(0)


def test_census_bits_follow_the_offsets():
    gray = np.full((9, 9), 100, np.uint8)
    dy, dx = CENSUS_OFFSETS[5]
    gray[4 + dy, 4 + dx] = 50  # one darker neighbour of the centre pixel (4, 4)
    codes = census_transform(gray)
    assert codes.dtype == np.uint32 and codes.shape == (9, 9)
    assert int(codes[4, 4]) == 1 << 5
    assert int(codes[0, 0]) == 0  # no darker neighbour (the darker pixel is not in its checkerboard)


def match_around_by_numpy(left_codes, right_codes, prior, radius):
    """census_matching.match_around written directly in NumPy / OpenCV (the implementation before the
    compiled kernel): every candidate's window sums as a whole image, then the trusted minimum."""
    from ros2_stereo_depth.inference.census_matching import MAX_MATCH_COST, STEP_PENALTY, WINDOW_PX

    h, w = prior.shape
    centre = np.rint(np.nan_to_num(prior, nan=0.0))
    x_minus_centre = np.arange(w, dtype=np.float32)[None, :] - centre
    room = cv2.erode(x_minus_centre, np.ones((WINDOW_PX, WINDOW_PX), np.uint8), borderType=cv2.BORDER_REPLICATE)
    at_zero = np.clip(x_minus_centre, -2 * w, 2 * w).astype(np.int64) + (np.arange(h) * w)[:, None]
    penalty = round(STEP_PENALTY * WINDOW_PX ** 2)
    costs = np.empty((2 * radius + 1, h, w), np.int64)
    for candidate, offset in enumerate(range(-radius, radius + 1)):
        bits = np.bitwise_count(left_codes ^ np.take(right_codes, at_zero - offset, mode="clip"))
        costs[candidate] = cv2.boxFilter(bits.astype(np.float64), -1, (WINDOW_PX, WINDOW_PX), normalize=False,
                                         borderType=cv2.BORDER_REFLECT)
        costs[candidate][room < offset] = 65535  # the window reaches left of the right image
    offsets = np.arange(-radius, radius + 1)[:, None, None]
    best = np.argmin(costs + penalty * np.abs(offsets), axis=0)  # ties: the first, as the kernel's key
    neighbour = np.clip(best, 1, 2 * radius - 1)
    raw = [np.take_along_axis(costs, (neighbour + k)[None], 0)[0] for k in (-1, 0, 1)]
    keep = ((raw[0] != raw[1]) | (raw[2] != raw[1])) & (raw[1] <= MAX_MATCH_COST * len(CENSUS_OFFSETS) * WINDOW_PX ** 2)
    keep &= (raw[0] < 65535) & (raw[1] < 65535) & (raw[2] < 65535) & (best > 0) & (best < 2 * radius)
    below, at, above = (r.astype(np.float32) + np.float32(penalty) * np.abs(neighbour + k - radius).astype(np.float32)
                        for r, k in zip(raw, (-1, 0, 1)))
    curvature = below - np.float32(2.0) * at + above
    sub_px = np.where(curvature > 0, np.float32(0.5) * (below - above) / np.maximum(curvature, np.float32(1e-6)),
                      np.float32(0.0))
    matched = centre + (best - radius).astype(np.float32) + np.clip(sub_px, np.float32(-0.5), np.float32(0.5))
    keep &= matched >= 0
    return np.where(keep, matched, prior), np.where(keep, raw[1].astype(np.float32), np.float32(np.inf))


@pytest.mark.parametrize("height, width, radius, window_px",
                         [(40, 64, 16, 9), (23, 37, 4, 9), (12, 9, 1, 9), (3, 5, 2, 9), (1, 1, 3, 9), (30, 50, 6, 7)])
def test_compiled_matching_equals_numpy(height, width, radius, window_px, monkeypatch):
    """The compiled loop (matching_kernels.c) gives exactly what the whole-image NumPy evaluation gives,
    sub-pixel values and costs included, with the left border's unmatchable candidates, a NaN prior and
    images smaller than the window (reflected borders); the shipped window (9 px, its own unrolled copy)
    and another."""
    from ros2_stereo_depth.inference import census_matching
    from ros2_stereo_depth.inference.census_matching import census_codes, match_around

    monkeypatch.setattr(census_matching, "WINDOW_PX", window_px)

    rng = np.random.default_rng(height * width + radius)
    left = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 0.8).astype(np.uint8)
    right = np.clip(np.roll(left, -3, axis=1) + rng.integers(-2, 3, left.shape), 0, 255).astype(np.uint8)
    columns = np.arange(width, dtype=np.float32)[None, :].repeat(height, 0)
    prior = np.float32(3.4) + np.float32(2.0) * np.sin(columns / np.float32(7.0))  # smooth, up to 2 px off
    prior[rng.random(prior.shape) < 0.03] = np.nan
    codes = census_codes(left, right)
    disparity, cost = match_around(codes, prior, radius)
    left_codes = census_transform(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY))
    right_codes = census_transform(cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)).ravel()
    expected_disparity, expected_cost = match_around_by_numpy(left_codes, right_codes, prior, radius)
    np.testing.assert_array_equal(disparity, expected_disparity)
    np.testing.assert_array_equal(cost, expected_cost)
    if min(height, width) >= 20:  # the matching did move pixels, to sub-pixel values
        moved = np.isfinite(cost)
        assert moved.mean() > 0.2 and np.any(disparity[moved] != np.rint(disparity[moved]))


def test_a_prior_a_few_px_off_is_corrected_to_sub_pixel(scene):
    truth = scene.disparity_px
    rng = np.random.default_rng(1)
    offset = cv2.resize(rng.uniform(-6, 6, (6, 8)).astype(np.float32), truth.shape[::-1], interpolation=cv2.INTER_CUBIC)
    prior = truth + offset
    refined = refine_disparity(scene.left, scene.right, prior, 8).disparity_px
    visible = ~scene.occluded
    before, after = np.abs(prior - truth)[visible], np.abs(refined - truth)[visible]
    assert (before > 1).mean() > 0.6
    assert (after > 1).mean() < 0.15, f"bad-1 {100 * (after > 1).mean():.1f} % after matching"
    assert np.median(after) < 0.3


def test_edge_seeds_recover_the_sides_of_a_blurred_depth_edge(scene):
    """A prior blurred like the network's edges (Gaussian, sigma 6 px) is wrong by more than the radius
    near depth edges; the searches around its local max and min find each side's disparity there."""
    from ros2_stereo_depth.evaluation.metrics import depth_edges

    truth, visible = scene.disparity_px, ~scene.occluded
    near_edge = cv2.dilate(depth_edges(truth, np.ones_like(visible)).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    prior = cv2.GaussianBlur(truth, (0, 0), 6)

    def bad1_near_edges(edge_seeds: bool) -> float:
        error = np.abs(refine_disparity(scene.left, scene.right, prior, 8, edge_seeds).disparity_px - truth)
        return float((error[near_edge & visible] > 1).mean() * 100)

    assert (np.abs(prior - truth)[near_edge & visible] > 1).mean() > 0.9
    without, with_seeds = bad1_near_edges(False), bad1_near_edges(True)
    assert without > 45 and with_seeds < 20, (without, with_seeds)


def test_outside_the_radius_or_without_texture_the_prior_stays():
    # A smooth texture: the cost falls all the way to the true match, so +-8 around a prior 10.5 px off
    # has its minimum at its edge (22 px), which says "outside": the prior stays.
    left, right = textured_shift(20, blur_px=4.0)
    far = np.full(left.shape[:2], 30.5, np.float32)
    refined = refine_disparity(left, right, far, 8).disparity_px
    inner = (slice(8, -8), slice(40, -8))
    assert (refined[inner] == far[inner]).mean() > 0.95
    near = np.full(left.shape[:2], 23.7, np.float32)
    np.testing.assert_allclose(refine_disparity(left, right, near, 8).disparity_px[inner], 20.0, atol=0.25)
    flat = np.full((64, 96, 3), 90, np.uint8)  # no texture: every candidate costs the same
    smooth = np.linspace(10.0, 14.0, 96, dtype=np.float32)[None, :].repeat(64, 0)
    np.testing.assert_array_equal(refine_disparity(flat, flat, smooth, 8).disparity_px, smooth)
    np.testing.assert_array_equal(refine_disparity(left, right, near, 0).disparity_px, near)  # radius 0: off


def test_bad_settings_and_sizes_are_refused():
    with pytest.raises(ValueError, match="radius_px must be in"):
        LocalMatching(radius_px=-1)
    with pytest.raises(ValueError, match="camera_radius_px must be in"):
        LocalMatching(camera_radius_px=33)
    left, right = textured_shift(4)
    with pytest.raises(ValueError, match="must match the disparity"):
        refine_disparity(left, right, np.zeros((10, 10), np.float32), 4)


class HalfSizeOracle:
    """A stand-in network at half the image size that answers the true disparity of the shrunken pair
    plus a fixed error, so the test sees what each matching level adds to it."""
    name, device = "oracle", "cpu"

    def __init__(self, truth_small: np.ndarray, error_px: float) -> None:
        self.height, self.width = truth_small.shape
        self.max_disparity = 64
        self.answer = truth_small + np.float32(error_px)

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        assert left_rgb.shape[:2] == (self.height, self.width)
        return StereoResult(self.answer.copy(), np.ones_like(self.answer))


@pytest.mark.parametrize("image_wh, network_wh, level_wh", [
    ((1282, 1110), (640, 480), (640, 554)),  # Aloe: the network's width, the image's aspect ratio (not 640x480)
    ((1280, 720), (640, 480), (640, 360)),
    ((641, 555), (640, 480), (641, 555)),  # at most 1.25x as wide: the image's own size, no second level
    ((320, 240), (640, 480), (320, 240)),  # a camera smaller than the network input is not upscaled
    # At most 2.5x upsampling to the camera: a 256-px network on a 1282-px camera matches at 512 px, not 256.
    ((1282, 1110), (256, 192), (512, 443)),
    ((1280, 720), (256, 192), (512, 288)),
    ((641, 555), (256, 192), (256, 222)),  # 2.5x or less: the network's width
    ((1920, 1080), (640, 480), (768, 432)),
])
def test_first_level_size(image_wh, network_wh, level_wh):
    assert LocalMatching().first_level_size(image_wh, network_wh) == level_wh
    assert LocalMatching(0, 4, sgbm=True).first_level_size(image_wh, network_wh) == level_wh  # SGBM alone
    # Level 1 off: the network's answer goes straight to the camera, resized once.
    assert LocalMatching(0, 4, sgbm=False).first_level_size(image_wh, network_wh) == network_wh
    assert NO_MATCHING.first_level_size(image_wh, network_wh) == network_wh


@pytest.mark.parametrize("image_wh, width_px, level_wh", [
    ((1282, 1110), 480, (480, 416)),  # a width of its own, whatever the network input's
    ((1282, 1110), 1100, (1282, 1110)),  # at most 1.25x as wide: the image's own size
    ((640, 480), 320, (320, 240)),
    ((1282, 1110), 256, (256, 222)),  # a width set explicitly is kept, even below a 2.5th of the image's
])
def test_first_level_width_can_be_set(image_wh, width_px, level_wh):
    assert LocalMatching(width_px=width_px).first_level_size(image_wh, (256, 192)) == level_wh
    with pytest.raises(ValueError, match="width_px"):
        LocalMatching(width_px=-1)


def test_both_levels_at_image_size(scene):
    truth = scene.disparity_px
    h, w = truth.shape
    small_truth = cv2.resize(truth, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST) / 2
    visible = ~scene.occluded

    def errors(error_px: float, matching: LocalMatching) -> tuple[float, float]:
        """bad-1 (%) and mean error (px) on the visible pixels."""
        oracle = HalfSizeOracle(small_truth, error_px)
        d = infer_at_image_size(oracle, scene.left, scene.right, matching).disparity_px
        assert d.shape == (h, w)
        error = np.abs(d - truth)[visible]
        return float((error > 1).mean() * 100), float(error.mean())

    # 5 px off at the network size, 10 px at the image's: only the first level reaches it.
    assert errors(5.0, NO_MATCHING)[0] > 95
    assert errors(5.0, LocalMatching(0, 4, sgbm=False))[0] > 90
    first, both = errors(5.0, LocalMatching(8, 0, sgbm=False)), errors(5.0, LocalMatching(8, 3, sgbm=False))
    assert first[0] < 10 and both[0] < 10
    assert both[1] < first[1], (first, both)  # the image-size level adds precision
    # 1.5 px off at the network size (3 at the image's): the image-size level alone corrects it.
    assert errors(1.5, NO_MATCHING)[0] > 95
    assert errors(1.5, LocalMatching(0, 4, sgbm=False))[0] < 10


def test_first_level_keeps_the_image_aspect_ratio(scene):
    """A network input of another aspect ratio (half the width, a third of the height): level 1 runs at
    half size (the network's width, the image's shape), on the images and the network's answer resized
    there, and level 2 at the image's."""
    truth = scene.disparity_px
    h, w = truth.shape
    squashed_truth = cv2.resize(truth, (w // 2, h // 3), interpolation=cv2.INTER_NEAREST) / 2
    seen = []

    class Recording(LocalMatching):
        def at_first_level(self, left_rgb, right_rgb, disparity_px):
            seen.append((left_rgb.shape, disparity_px.shape, float(np.median(disparity_px))))
            return super().at_first_level(left_rgb, right_rgb, disparity_px)

    d = infer_at_image_size(HalfSizeOracle(squashed_truth, 2.0), scene.left, scene.right,
                            Recording(8, 3, sgbm=False)).disparity_px
    assert seen[0][:2] == ((h // 2, w // 2, 3), (h // 2, w // 2))
    assert seen[0][2] == pytest.approx(float(np.median(truth)) / 2 + 2.0, abs=0.5)  # px of the half-size image
    error = np.abs(d - truth)[~scene.occluded]
    assert (error > 1).mean() < 0.10, f"bad-1 {100 * (error > 1).mean():.1f} %"


@pytest.mark.parametrize("network_wh, from_level", [
    ((64, 40), True),  # level 1 (the network's width, the 100x75 image's shape: 64x48) is larger: shrunk from it
    ((64, 56), False),  # level 1 (64x48) is shorter than the network input: shrunk from the camera images
])
def test_network_input_comes_from_level_one_when_it_is_larger(network_wh, from_level):
    """The camera images are shrunk once for level 1 and, when those are at least the network input's
    size, the network's input is shrunk from them: the pixels the network sees, exactly."""
    from ros2_stereo_depth.inference.base import resize_to_input

    rng = np.random.default_rng(3)
    left, right = (rng.integers(0, 256, (75, 100, 3), dtype=np.uint8) for _ in range(2))
    seen = []

    class Recording(HalfSizeOracle):
        def infer(self, left_rgb, right_rgb):
            seen.append(left_rgb.copy())
            return super().infer(left_rgb, right_rgb)

    oracle = Recording(np.full(network_wh[::-1], 4.0, np.float32), 0.0)
    infer_at_image_size(oracle, left, right, LocalMatching(2, 0, sgbm=False))
    level = resize_to_input(left, 64, 48)
    expected = resize_to_input(level if from_level else left, *network_wh)
    np.testing.assert_array_equal(seen[0], expected)
    assert not np.array_equal(resize_to_input(left, *network_wh), resize_to_input(level, *network_wh))


def test_upsampling_to_the_camera_keeps_depth_edges_sharp():
    """A level-1 disparity (40x30) with a vertical depth edge, at the camera's 100x60 (2.5x wide, 2x high):
    beside the edge each camera pixel takes the side its colour belongs to, where bilinear upsampling
    mixes the two; a smooth slant is upsampled bilinearly."""
    from ros2_stereo_depth.inference.disparity_resize import resize_disparity, upsample_to_camera

    camera = np.zeros((60, 100, 3), np.uint8)
    camera[:, :53] = (200, 40, 40)  # the foreground's colour up to column 52, then the background's
    camera[:, 53:] = (40, 40, 200)
    small = cv2.resize(camera, (40, 30), interpolation=cv2.INTER_AREA)
    level = np.where(np.arange(40)[None, :] < 21, np.float32(20.0), np.float32(8.0)).repeat(30, 0)
    upsampled = upsample_to_camera(level, small, camera)
    expected = np.where(np.arange(100)[None, :] < 53, np.float32(50.0), np.float32(20.0)).repeat(60, 0)  # x2.5
    np.testing.assert_array_equal(upsampled, expected)
    bilinear = resize_disparity(level, 100, 60)
    assert np.abs(bilinear - expected).max() > 10  # what the colour pick corrects
    slant = np.linspace(10, 11.5, 40, dtype=np.float32)[None, :].repeat(30, 0)  # 0.04 px per level-1 column
    np.testing.assert_array_equal(upsample_to_camera(slant, small, camera), resize_disparity(slant, 100, 60))


@pytest.mark.parametrize("edge_seeds", [True, False])
def test_parallel_bands_give_the_whole_image_result(scene, monkeypatch, edge_seeds):
    """Each band carries enough rows of context (census and window) for its rows to come out exactly as
    the whole image's."""
    import ros2_stereo_depth.inference.census_matching as census_matching

    prior = scene.disparity_px + np.float32(2.6)
    whole = census_matching.refine_band(scene.left, scene.right, prior, 8, edge_seeds)
    monkeypatch.setattr(census_matching, "BANDS", 3)
    monkeypatch.setattr(census_matching, "MIN_BAND_ROWS", 32)  # the scene's 192 rows: 3 bands
    assert census_matching.band_count(*prior.shape, 3) == 3
    banded = refine_disparity(scene.left, scene.right, prior, 8, edge_seeds)
    np.testing.assert_array_equal(banded.disparity_px, whole.disparity_px)
    np.testing.assert_array_equal(banded.matched, whole.matched)
    assert np.abs(whole.disparity_px - prior).max() > 1.0  # the matching did change the prior
    np.testing.assert_array_equal(whole.matched, whole.disparity_px != prior)


def test_bands_stay_tall_whatever_the_thread_count():
    """16 threads on 480 rows: 5 bands of 96 rows, not 15 of 32 (on 16 cores those took 2.1-2.4x the time
    of 4 bands); large images take more bands than threads (memory); short ones one band."""
    from ros2_stereo_depth.inference.census_matching import MIN_BAND_ROWS, band_count

    assert band_count(480, 640, 16) == 480 // MIN_BAND_ROWS == 5
    assert band_count(480, 640, 2) == 2 and band_count(480, 640, 4) == 4
    assert band_count(1110, 1282, 2) == 5  # 1.42 Mpx / MAX_BAND_PIXELS
    assert band_count(720, 1280, 16) == 7
    assert band_count(150, 640, 4) == 1


def blurred_prior(scene, offset_px: float) -> np.ndarray:
    """A network-like prior: the true disparity blurred across depth edges (sigma 6 px), plus an offset."""
    return cv2.GaussianBlur(scene.disparity_px, (0, 0), 6) + np.float32(offset_px)


def test_sgbm_fusion_corrects_a_prior_beyond_the_radius(scene):
    """10 px off with a radius of 4: the census matching cannot reach the answer, SGBM's trusted matches
    do, everywhere but its blind left band (its first numDisparities columns), where the prior stays."""
    truth, visible = scene.disparity_px, ~scene.occluded
    prior = blurred_prior(scene, 10.0)
    refined = refine_disparity(scene.left, scene.right, prior, 4, edge_seeds=True)
    matches = sgbm_matches(scene.left, scene.right, prior)
    fused = fuse_sgbm(refined, matches)
    band = np.arange(truth.shape[1])[None, :] < matches.blind_columns
    assert (np.abs(refined.disparity_px - truth)[visible] > 1).mean() > 0.95
    error = np.abs(fused - truth)
    assert (error[visible & ~band] > 1).mean() < 0.05, f"bad-1 {100 * (error[visible & ~band] > 1).mean():.1f} %"
    np.testing.assert_array_equal(fused[:, band[0]], refined.disparity_px[:, band[0]])
    # The node's path: LocalMatching turns the fusion on by default, off with sgbm=False.
    np.testing.assert_array_equal(LocalMatching(4, 0).at_first_level(scene.left, scene.right, prior), fused)
    np.testing.assert_array_equal(LocalMatching(4, 0, sgbm=False).at_first_level(scene.left, scene.right, prior),
                                  refined.disparity_px)


def test_sgbm_fusion_fills_occlusions_from_the_background(scene):
    """The blurred prior spreads the foreground over the pixels it occludes in the right view; there no
    match exists, and the fill takes the background's disparity (the truth of an occluded pixel)."""
    truth = scene.disparity_px
    prior = blurred_prior(scene, 0.0)
    refined = refine_disparity(scene.left, scene.right, prior, 8, edge_seeds=True)
    fused = fuse_sgbm(refined, sgbm_matches(scene.left, scene.right, prior))
    occluded = scene.occluded & (np.arange(truth.shape[1])[None, :] >= 80)  # right of SGBM's blind band
    assert occluded.sum() > 1000
    before, after = ((np.abs(d - truth)[occluded] > 2).mean() for d in (refined.disparity_px, fused))
    assert before > 0.3 and after < 0.15, (before, after)


def test_sgbm_answers_half_of_its_blind_band():
    """A plane at 10 px with a prior that asks for a 96 px range: SGBM leaves columns 0-95 blank; the
    second pass over the left part with half the range answers columns 48-95, exactly."""
    left, right = textured_shift(10, width=200)
    prior = np.full(left.shape[:2], 60.0, np.float32)
    matches = sgbm_matches(left, right, prior)
    assert (matches.num_disparities, matches.blind_columns) == (96, 48)
    assert not matches.answered[:, :48].any()
    band = matches.answered[8:-8, 48:96]  # rows clear of the image border
    assert band.mean() > 0.9, band.mean()
    np.testing.assert_allclose(matches.disparity_px[8:-8, 48:96][band], 10.0, atol=0.25)
    # Exact matches pass the census gate (from column 52: the cost window's left edge then clears the blank
    # columns, which window_cost_at matches at 0 px).
    assert (matches.cost[8:-8, 52:96][band[:, 4:]] < 0.05).all()


def test_sgbm_fusion_tiers(scene, monkeypatch):
    """Which value each pixel gets, with the census cost of SGBM's matches set by hand, column by column
    (two trusted, one plausible, one poor: every pixel has enough trusted neighbours): trusted (cost <=
    MAX_MATCH_COST) everywhere SGBM answers; plausible (up to SGBM_PLAUSIBLE_COST) only where the census
    matching did not answer; a poor match never."""
    import ros2_stereo_depth.inference.sgbm_fusion as sgbm_fusion
    from ros2_stereo_depth.inference.census_matching import MAX_MATCH_COST, Refined
    from ros2_stereo_depth.inference.sgbm import fill_holes

    h, w = scene.disparity_px.shape
    prior = blurred_prior(scene, 10.0)
    column = np.arange(w)[None, :].repeat(h, 0)
    stripes = {"trusted": column % 4 < 2, "plausible": column % 4 == 2, "poor": column % 4 == 3}
    cost = np.select([stripes["trusted"], stripes["plausible"], stripes["poor"]],
                     [MAX_MATCH_COST, sgbm_fusion.SGBM_PLAUSIBLE_COST, 0.5], 0.0).astype(np.float32)
    monkeypatch.setattr(sgbm_fusion, "window_cost_at", lambda left, right, disparity: cost)
    census_matched = (np.arange(h)[:, None] < h // 2).repeat(w, 1)  # the census matching answered the top half
    refined = Refined(prior - np.float32(3.0), census_matched)
    matches = sgbm_matches(scene.left, scene.right, prior)
    np.testing.assert_array_equal(matches.cost, cost)
    fused = fuse_sgbm(refined, matches)
    sgbm_px, answered = matches.disparity_px, matches.answered
    window = (sgbm_fusion.SGBM_DENSITY_WINDOW_PX,) * 2
    supported = answered & (cv2.boxFilter((answered & stripes["trusted"]).astype(np.float32), -1, window,
                                          borderType=cv2.BORDER_REFLECT) >= sgbm_fusion.SGBM_MIN_DENSITY)
    trusted = supported & stripes["trusted"]
    background = fill_holes(sgbm_px, trusted, max_gap_px=matches.num_disparities)
    fillable = np.isfinite(background) & (column >= matches.blind_columns)
    bottom = ~census_matched
    expected = {  # (top half, bottom half) for the pixels of each stripe where SGBM answered, supported
        "trusted": (sgbm_px, sgbm_px),
        "plausible": (refined.disparity_px, sgbm_px),
        "poor": (refined.disparity_px, np.where(fillable, background, refined.disparity_px))}
    for name, (top_value, bottom_value) in expected.items():
        for half, value in ((census_matched, top_value), (bottom, bottom_value)):
            where = stripes[name] & half & supported
            assert where.sum() > 500, name
            np.testing.assert_array_equal(fused[where], value[where], err_msg=name)
    poor = stripes["poor"] & bottom & supported
    assert (fused[poor] != sgbm_px[poor]).mean() > 0.1  # a poor match is not taken: the fill differs from it
    # The top half keeps the census matching's answer wherever SGBM is not trusted.
    keep = census_matched & ~stripes["trusted"]
    np.testing.assert_array_equal(fused[keep], refined.disparity_px[keep])


def test_sgbm_fusion_keeps_out_of_a_noisy_camera(scene):
    """Strong independent noise in each view: no SGBM match passes the gate, nothing is filled."""
    rng = np.random.default_rng(0)
    left, right = (np.clip(im + rng.normal(0, 60, im.shape), 0, 255).astype(np.uint8) for im in (scene.left, scene.right))
    prior = blurred_prior(scene, 0.0)
    refined = refine_disparity(left, right, prior, 8, edge_seeds=True)
    np.testing.assert_array_equal(fuse_sgbm(refined, sgbm_matches(left, right, prior)), refined.disparity_px)


def test_compiled_matching_refuses_arguments_that_would_read_outside_its_arrays():
    """The C loop trusts its arguments, so its wrapper checks them: a match index whose candidates leave the
    right codes, a wrong type or shape, or a radius whose candidates do not fit the key is a ValueError (and
    the valid call next to them matches)."""
    from ros2_stereo_depth.inference.census_matching import WINDOW_PX, census_codes, match_around
    from ros2_stereo_depth.inference.matching_kernels import match_rows

    left, right = textured_shift(4, height=20, width=30)
    left_codes, right_codes = census_codes(left, right)
    prior = np.full((20, 30), 4.0, np.float32)
    disparity, _ = match_around((left_codes, right_codes), prior, 2)
    assert np.abs(disparity[:, 10:] - 4.0).max() < 0.5
    index = np.full((20, 30), 5, np.int32)
    room = np.zeros((20, 30), np.float32)
    valid = (left_codes, right_codes, index, room, 0, prior, prior, 2, WINDOW_PX // 2, 20, 500.0)
    match_rows(*valid)
    for position, bad in ((2, np.full((20, 30), 1, np.int32)),  # index 1 - radius 2 < 0
                          (2, np.full((20, 30), right_codes.size - 2, np.int32)),  # past the end
                          (2, index.astype(np.int64)), (5, prior[:, :29].copy()), (7, 64), (7, 0)):
        arguments = list(valid)
        arguments[position] = bad
        with pytest.raises(ValueError, match="matching kernels"):
            match_rows(*arguments)
