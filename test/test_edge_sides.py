"""The edge sides (inference/edge_sides.py), the local matching's last stage: a thin foreground bar whose
outline window matching gave to the textured background gets it back; visible background stays."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.inference.base import StereoResult, infer_at_image_size
from ros2_stereo_depth.inference.edge_sides import MIN_STEP_PX, snap_to_edge_sides
from ros2_stereo_depth.inference.local_matching import LocalMatching

HEIGHT, WIDTH = 64, 160
BACKGROUND_PX, BAR_PX = 10, 30
BAR = slice(90, 104)  # the bar's columns in the left image (14 px wide)


def bar_scene():
    """A busy background plane (blurred colour noise, like wallpaper) at BACKGROUND_PX and a smooth green bar
    at BAR_PX in front of it; exact: right(x - d) = left(x) wherever both see the same surface.
    Returns left, right, the true disparity and the mask of background pixels the right camera sees."""
    rng = np.random.default_rng(3)
    wall = cv2.GaussianBlur(rng.uniform(0, 255, (HEIGHT, WIDTH + BACKGROUND_PX, 3)).astype(np.float32), (0, 0), 0.8)
    wall = np.clip((wall - wall.mean()) * 3 + 128, 0, 255).astype(np.uint8)
    shade = np.linspace(-12, 12, HEIGHT, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, 2, (HEIGHT, BAR.stop - BAR.start, 3))
    bar = np.clip(np.array([60, 150, 70], np.float32) + shade + noise, 0, 255).astype(np.uint8)
    left, right = wall[:, :WIDTH].copy(), wall[:, BACKGROUND_PX:BACKGROUND_PX + WIDTH].copy()
    left[:, BAR] = bar
    right[:, BAR.start - BAR_PX:BAR.stop - BAR_PX] = bar
    truth = np.full((HEIGHT, WIDTH), BACKGROUND_PX, np.float32)
    truth[:, BAR] = BAR_PX
    columns = np.arange(WIDTH)
    # Background the right camera sees: not behind the bar there (its match column is outside the bar's).
    hidden = (columns - BACKGROUND_PX >= BAR.start - BAR_PX) & (columns - BACKGROUND_PX < BAR.stop - BAR_PX)
    seen_background = (truth == BACKGROUND_PX) & ~hidden[None, :] & (columns >= BACKGROUND_PX)[None, :]
    return left, right, truth, seen_background


def fattened(truth: np.ndarray, px: int) -> np.ndarray:
    """The background's disparity over the bar's outer `px` columns on each side, as a window matcher
    that follows the busier side leaves it."""
    prior = truth.copy()
    prior[:, BAR.start:BAR.start + px] = BACKGROUND_PX
    prior[:, BAR.stop - px:BAR.stop] = BACKGROUND_PX
    return prior


def test_the_bar_gets_its_outline_back_and_the_background_stays():
    left, right, truth, seen_background = bar_scene()
    prior = fattened(truth, 3)
    snapped = snap_to_edge_sides(prior, left, right)
    lost = (prior != truth) & (truth == BAR_PX)
    assert lost.sum() == 6 * HEIGHT
    # Each lost pixel takes the bar's value exactly (the local maximum beside it), with a few rows' slack.
    assert (snapped[lost] == BAR_PX).mean() > 0.95, f"{(snapped[lost] == BAR_PX).mean():.2f}"
    np.testing.assert_array_equal(snapped[seen_background], BACKGROUND_PX)
    np.testing.assert_array_equal(snapped[(truth == BAR_PX) & ~lost], BAR_PX)


def test_an_occlusion_beside_the_bar_takes_the_background():
    """Left of the bar, the left camera sees background that the bar hides from the right one (columns
    70-83). Given the bar's disparity from column 80 on, the pixels at the step (80-82) match neither side:
    at 30 px they meet the wrong stretch of wall, at 10 px the bar itself; they take the farther side."""
    left, right, truth, seen_background = bar_scene()
    assert not seen_background[:, 70:84].any() and seen_background[:, 84:BAR.start].all()
    prior = truth.copy()
    prior[:, 80:BAR.start] = BAR_PX
    snapped = snap_to_edge_sides(prior, left, right)
    assert (snapped[:, 80:83] == BACKGROUND_PX).mean() > 0.95, f"{(snapped[:, 80:83] == BACKGROUND_PX).mean():.2f}"
    np.testing.assert_array_equal(snapped[:, 83:], prior[:, 83:])  # away from the step: nothing to compare


def test_without_a_depth_edge_nothing_moves():
    left, right, truth, _ = bar_scene()
    # A slant whose every 7x7 window spans less than MIN_STEP_PX (0.9 of it over 7 columns).
    slant = np.tile(np.arange(WIDTH, dtype=np.float32) * np.float32(0.9 * MIN_STEP_PX / 7) + 8, (HEIGHT, 1))
    np.testing.assert_array_equal(snap_to_edge_sides(slant, left, right), slant)
    flat = np.full_like(truth, BACKGROUND_PX)
    assert snap_to_edge_sides(flat, left, right) is flat


def test_a_pixel_without_an_answer_keeps_none():
    left, right, truth, _ = bar_scene()
    prior = fattened(truth, 3)
    prior[20, BAR.start] = np.nan  # a lost outline pixel that had no answer at all
    snapped = snap_to_edge_sides(prior, left, right)
    assert np.isnan(snapped[20, BAR.start]) and np.isfinite(np.delete(snapped.ravel(), 20 * WIDTH + BAR.start)).all()
    assert snapped[20, BAR.start + 1] == BAR_PX


def test_threads_share_the_pixels_exactly():
    left, right, truth, _ = bar_scene()
    prior = fattened(truth, 4)
    np.testing.assert_array_equal(snap_to_edge_sides(prior, left, right, threads=1),
                                  snap_to_edge_sides(prior, left, right, threads=3))


def test_sizes_must_match():
    left, right, truth, _ = bar_scene()
    with pytest.raises(ValueError, match="must match the disparity's 80x64"):
        snap_to_edge_sides(truth[:, :80], left, right)


def test_the_node_path_runs_the_edge_sides_last_when_on():
    """infer_at_image_size with match_edges on equals the stage applied to the result with it off."""
    left, right, truth, _ = bar_scene()

    class Fattening:
        name, device, height, width, max_disparity = "fattening", "cpu", HEIGHT, WIDTH, 64

        def infer(self, left_rgb, right_rgb):
            return StereoResult(fattened(truth, 3), np.ones_like(truth))

    off = LocalMatching(0, 0, sgbm=False, edges=False)
    on = LocalMatching(0, 0, sgbm=False, edges=True)
    without = infer_at_image_size(Fattening(), left, right, off).disparity_px
    np.testing.assert_array_equal(without, fattened(truth, 3))
    with_edges = infer_at_image_size(Fattening(), left, right, on).disparity_px
    np.testing.assert_array_equal(with_edges, snap_to_edge_sides(without, left, right))
    assert (with_edges != without).sum() > 5 * HEIGHT


def test_a_single_edge_pixel_and_more_threads_than_pixels():
    """One pixel to decide (OpenCV would read a lone pixel's 4 bytes as a scalar) and 4 threads for it: a
    one-row map with a one-pixel step at column 33, whose band (columns 30-36) keeps only column 36 (the
    others' matches at 30 px would leave the right image)."""
    left, right, _, _ = bar_scene()
    row = np.full((1, 80), BACKGROUND_PX, np.float32)
    row[0, 33] = BAR_PX
    left_row, right_row = (np.ascontiguousarray(image[30:31, :80]) for image in (left, right))
    out = snap_to_edge_sides(row, left_row, right_row, threads=4)
    changed = np.flatnonzero(out != row)
    assert set(changed) <= {36} and out[0, 36] in (BACKGROUND_PX, BAR_PX)


def test_compiled_costs_equal_numpy():
    """The compiled support-weighted costs (matching_kernels.c) equal the NumPy evaluation they replaced:
    every support sample weighted by exp(-CIELAB L1 / sigma), the capped RGB L1 error, summed in order."""
    from ros2_stereo_depth.inference.edge_sides import (_WEIGHTS, MAX_COLOUR_ERROR, SUPPORT_RADIUS_PX,
                                                        SUPPORT_STRIDE_PX, _packed)
    from ros2_stereo_depth.inference.matching_kernels import support_weighted_costs

    rng = np.random.default_rng(7)
    left_rgb = cv2.GaussianBlur(rng.integers(0, 256, (30, 50, 3), np.uint8), (0, 0), 1.0)
    right_rgb = np.roll(left_rgb, -5, axis=1)  # the true match: 5 px
    lab = cv2.cvtColor(left_rgb, cv2.COLOR_RGB2LAB)
    pad = SUPPORT_RADIUS_PX
    left, right, guide = (_packed(image, pad) for image in (left_rgb, right_rgb, lab))
    padded_width = 50 + 2 * pad
    rows, columns = rng.integers(0, 30, 200), rng.integers(20, 38, 200)  # support inside the rolled part
    left_at = ((rows + pad) * padded_width + columns + pad).astype(np.int32)
    right_at = np.stack([left_at - rng.integers(0, 20, 200).astype(np.int32), left_at - np.int32(5)])
    costs = support_weighted_costs(left_at, right_at, left, right, guide, _WEIGHTS, pad, SUPPORT_STRIDE_PX,
                                   padded_width, MAX_COLOUR_ERROR)

    def channels(packed, at):
        return packed.take(at).view(np.uint8).reshape(-1, 4)[:, :3].astype(np.int32)

    total, weight_sum = np.zeros((2, 200), np.float32), np.zeros(200, np.float32)
    for dy in range(-pad, pad + 1, SUPPORT_STRIDE_PX):
        for dx in range(-pad, pad + 1, SUPPORT_STRIDE_PX):
            offset = dy * padded_width + dx
            weight = _WEIGHTS.take(np.abs(channels(guide, left_at + offset) - channels(guide, left_at)).sum(axis=1))
            weight_sum += weight
            for k in range(2):
                error = np.abs(channels(right, right_at[k] + offset) - channels(left, left_at + offset)).sum(axis=1)
                total[k] += weight * np.minimum(error, MAX_COLOUR_ERROR).astype(np.float32)
    np.testing.assert_array_equal(costs, total / weight_sum)
    assert costs[1].max() == 0 and costs[0].mean() > 10  # the true match, and mostly wrong ones
    outside = right_at.copy()
    outside[0, 0] = pad * padded_width  # its support window's top rows are before the first packed pixel
    with pytest.raises(ValueError, match="support window"):  # the C loop would read outside the image
        support_weighted_costs(left_at, outside, left, right, guide, _WEIGHTS, pad, SUPPORT_STRIDE_PX,
                               padded_width, MAX_COLOUR_ERROR)
