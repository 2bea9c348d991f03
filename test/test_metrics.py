"""Disparity metrics on hand-made numbers, depth edges on step images, and the SGBM baseline (given and
tuned) on an exact synthetic pair."""
import math

import numpy as np
import pytest

from ros2_stereo_depth.evaluation.metrics import EDGE_THRESHOLD_PX, depth_edges, disparity_metrics, pool_metrics
from ros2_stereo_depth.evaluation.sgbm import tune_sgbm, tuned_candidates
from ros2_stereo_depth.inference.sgbm import fill_holes, sgbm_disparity
from ros2_stereo_depth.pair import StereoPair


def test_dense_metrics_by_hand():
    """GT 2x3 with one unknown pixel (0); the prediction misses one pixel (NaN).
    Valid pixels and their errors:
      gt 10, pred 10.5 -> 0.5      gt 20, pred 22.5 -> 2.5   gt 100, pred 104 -> 4 (< 5 % of 100)
      gt 40, pred 36   -> 4        gt 8, missing      -> 8 (dense: as if 0 were predicted)
    The unknown-gt pixel's prediction (999) must not count."""
    gt = np.array([[10.0, 20.0, 0.0], [100.0, 40.0, 8.0]])
    pred = np.array([[10.5, 22.5, 999.0], [104.0, 36.0, np.nan]])
    m = disparity_metrics(pred, gt)
    assert m["pixels"] == 5 and m["predicted_pixels"] == 4
    assert m["epe"] == pytest.approx((0.5 + 2.5 + 4 + 4 + 8) / 5)
    assert m["epe_predicted"] == pytest.approx((0.5 + 2.5 + 4 + 4) / 4)
    assert m["bad1"] == pytest.approx(100 * 4 / 5)  # 2.5, 4, 4, missing
    assert m["bad2"] == pytest.approx(100 * 4 / 5)
    assert m["bad3"] == pytest.approx(100 * 3 / 5)  # 4, 4, missing
    assert m["d1"] == pytest.approx(100 * 2 / 5)  # 4 px on 40 (10 %) and missing; 4 px on 100 is only 4 %
    assert m["density"] == pytest.approx(100 * 4 / 5)
    assert m["bad2_predicted"] == pytest.approx(100 * 3 / 4)  # 2.5, 4, 4 of the 4 predicted
    # Every valid pixel has a valid neighbour more than 2 px away (10-20, 10-100, 20-40, 40-8 ...).
    assert m["edge_pixels"] == 5 and m["edge_bad2"] == pytest.approx(m["bad2"])
    assert m["edge_epe"] == pytest.approx(m["epe"])


def test_explicit_masks_override_finiteness():
    gt = np.array([[5.0, 5.0], [5.0, 5.0]])
    pred = np.array([[5.0, 9.0], [5.0, 5.0]])
    m = disparity_metrics(pred, gt, gt_valid=np.array([[True, True], [False, False]]),
                          predicted=np.array([[True, False], [True, True]]))
    # Two valid pixels: one exact, one not predicted (its 9.0 is ignored: error = gt = 5).
    assert m["epe"] == pytest.approx(2.5) and m["epe_predicted"] == pytest.approx(0.0)
    assert m["bad2"] == pytest.approx(50.0) and m["density"] == pytest.approx(50.0)
    assert m["edge_pixels"] == 0 and math.isnan(m["edge_bad2"]) and math.isnan(m["edge_epe"])


def test_depth_edges_of_a_step_are_the_two_columns_beside_it():
    gt = np.where(np.arange(8) < 5, 10.0, 30.0)[None].repeat(4, axis=0)  # jump between columns 4 and 5
    edges = depth_edges(gt, np.ones_like(gt, bool))
    assert edges[:, [4, 5]].all() and edges.sum() == 8
    # A slant of 1 px per pixel (and 8-bit quantisation steps) is no edge, nor a jump of exactly the threshold.
    slant = np.arange(8, dtype=float)[None].repeat(4, axis=0)
    assert not depth_edges(slant, np.ones_like(slant, bool)).any()
    small = np.where(np.arange(8) < 5, 10.0, 10.0 + EDGE_THRESHOLD_PX)[None].repeat(4, axis=0)
    assert not depth_edges(small, np.ones_like(small, bool)).any()
    # Unknown ground truth is never an edge, and a jump across it (two columns apart) is not seen.
    valid = np.ones_like(gt, bool)
    valid[:, 5] = False
    assert not depth_edges(gt, valid).any()
    valid[:, 5], valid[0, 4] = True, False
    edges = depth_edges(gt, valid)
    assert not edges[0, 4] and edges[0, 5] and edges[1:, [4, 5]].all() and edges.sum() == 7


def test_edge_metrics_on_a_blurred_step():
    """A prediction that smears the step over 3 columns is wrong only on the edge pixels."""
    gt = np.where(np.arange(10) < 5, 10.0, 30.0)[None].repeat(3, axis=0)
    pred = gt.copy()
    pred[:, 4], pred[:, 5] = 20.0, 20.0  # both edge columns 10 px off
    m = disparity_metrics(pred, gt)
    assert m["edge_pixels"] == 6 and m["edge_bad2"] == pytest.approx(100.0) and m["edge_epe"] == pytest.approx(10.0)
    assert m["bad2"] == pytest.approx(100 * 6 / 30) and m["epe"] == pytest.approx(10.0 * 6 / 30)


def test_pooling_weights_by_pixels():
    a = disparity_metrics(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 4.0]]))  # 3 px, one bad, 2 edge px
    b = disparity_metrics(np.array([[np.nan]]), np.array([[2.0]]))  # 1 px, missing, no edge
    pooled = pool_metrics([a, b])
    assert pooled["bad2"] == pytest.approx(100 * 2 / 4)
    assert pooled["epe"] == pytest.approx((0 + 0 + 3 + 2) / 4)
    assert pooled["epe_predicted"] == pytest.approx(3 / 3)
    assert pooled["density"] == pytest.approx(75.0)
    assert pooled["edge_pixels"] == 2 and pooled["edge_bad2"] == pytest.approx(50.0)
    assert pooled["edge_epe"] == pytest.approx(1.5)
    assert math.isnan(disparity_metrics(np.array([[np.nan]]), np.array([[2.0]]))["epe_predicted"])


def test_no_valid_ground_truth_is_an_error():
    with pytest.raises(ValueError):
        disparity_metrics(np.ones((2, 2)), np.zeros((2, 2)))


def exact_pair(height=96, width=240, background_px=20, foreground_px=36, seed=0):
    """Two fronto-parallel layers with integer disparities: a textured wall and a box in front of it,
    rendered exactly (the right pixel x sees the box where x + 36 lies in it, else the wall at x + 20)."""
    rng = np.random.default_rng(seed)
    import cv2
    texture = [cv2.GaussianBlur(rng.integers(0, 256, (height, width + 64, 3), dtype=np.uint8), (3, 3), 0.8)
               for _ in range(2)]
    box = np.zeros((height, width + 64), bool)
    box[16:80, 90:190] = True
    left = np.where(box[:, :width, None], texture[1][:, :width], texture[0][:, :width])
    xs = np.arange(width)
    right = np.empty_like(left)
    for y in range(height):
        on_box = box[y, xs + foreground_px]
        right[y] = np.where(on_box[:, None], texture[1][y, xs + foreground_px], texture[0][y, xs + background_px])
    gt = np.where(box[:, :width], float(foreground_px), float(background_px)).astype(np.float32)
    return StereoPair(left, right, gt, np.ones_like(gt, bool))


def test_sgbm_recovers_an_exact_pair():
    pair = exact_pair()
    disparity, predicted = sgbm_disparity(pair.left, pair.right, 40)
    assert disparity.dtype == np.float32 and predicted.dtype == bool
    assert np.all(np.isnan(disparity[~predicted])) and np.all(disparity[predicted] >= 0)
    # 40 is rounded up to 48 disparities; SGBM answers nothing in the 48 columns it cannot search.
    assert not predicted[:, :48].any() and predicted[:, 48:].any()
    m = disparity_metrics(disparity, pair.disparity_px, pair.valid, predicted)
    assert m["epe_predicted"] < 1.0 and 50.0 < m["density"] < 100.0


def test_tuned_candidates_cover_the_ground_truth():
    assert tuned_candidates(36.0) == [16, 32, 48]  # 1.5 x 36 = 54: multiples of 16 up to 48
    assert tuned_candidates(100.0) == [16, 32, 48, 64, 80, 96, 112, 128, 144]  # up to 150
    assert tuned_candidates(10.0) == [16]  # 15 < 16, but 16 covers 10
    assert tuned_candidates(32.0)[-1] == 48  # 1.5 x 32 = 48 (and 32 alone would not reach 32)


def test_tuning_picks_the_range_that_covers_the_scene():
    """The box at 36 px is out of reach of 16 and 32 disparities: the tuning must pick 48, the
    setting whose pooled bad-2 it reports must be what SGBM gives there, and no other is better."""
    pair = exact_pair()
    tuned = tune_sgbm([pair])
    assert tuned.num_disparities == 48 and tuned.block_size in (3, 5, 7)
    assert len(tuned.tried) == 9 and tuned.metrics["bad2"] == min(t["bad2"] for t in tuned.tried)
    disparity, predicted = sgbm_disparity(pair.left, pair.right, tuned.num_disparities, tuned.block_size)
    direct = disparity_metrics(disparity, pair.disparity_px, pair.valid, predicted)
    assert tuned.metrics["bad2"] == pytest.approx(direct["bad2"])
    # What remains is mostly the 48 unanswerable left columns (20 % of the image).
    assert 19.0 < tuned.metrics["bad2"] < 30.0
    assert tuned.search_seconds >= 9 * tuned.seconds_per_pair * 0.5 > 0.0
    # Filled from the background, those columns take the background's disparity: far fewer errors.
    filled = tuned.filled
    assert filled is not None and filled.metrics["density"] == 100.0
    assert filled.metrics["bad2"] == min(t["bad2_filled"] for t in tuned.tried) < tuned.metrics["bad2"] - 10.0
    disparity, predicted = sgbm_disparity(pair.left, pair.right, filled.num_disparities, filled.block_size)
    again = fill_holes(disparity, predicted)
    assert filled.metrics["bad2"] == pytest.approx(disparity_metrics(again, pair.disparity_px, pair.valid)["bad2"])


def test_fill_holes_takes_the_farther_neighbour_on_the_row():
    disparity = np.array([[np.nan, 5.0, np.nan, np.nan, 9.0, np.nan],
                          [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
                          [2.0, np.nan, 7.0, 7.0, np.nan, 3.0]], np.float32)
    predicted = np.isfinite(disparity)
    filled = fill_holes(np.nan_to_num(disparity, nan=-1.0), predicted)
    np.testing.assert_array_equal(filled[0], [5, 5, 5, 5, 9, 9])  # holes between 5 and 9 take 5
    assert np.isnan(filled[1]).all()  # nothing on the row to fill from
    np.testing.assert_array_equal(filled[2], [2, 2, 7, 7, 3, 3])


def test_fill_holes_with_a_gap_limit_fills_only_narrow_holes_between_two_predictions():
    disparity = np.array([[np.nan, 5.0, np.nan, np.nan, 9.0, np.nan],
                          [4.0, np.nan, np.nan, np.nan, np.nan, 6.0],
                          [2.0, np.nan, 7.0, 7.0, np.nan, 3.0]], np.float32)
    predicted = np.isfinite(disparity)
    filled = fill_holes(np.nan_to_num(disparity, nan=-1.0), predicted, max_gap_px=3)
    np.testing.assert_array_equal(filled[0, 1:5], [5, 5, 5, 9])  # 5 and 9 are 3 px apart
    assert np.isnan(filled[0, [0, 5]]).all()  # a prediction on one side only
    assert np.isnan(filled[1, 1:5]).all()  # 4 and 6 are 5 px apart: too wide
    np.testing.assert_array_equal(filled[2], [2, 2, 7, 7, 3, 3])
