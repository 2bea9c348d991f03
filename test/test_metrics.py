"""Disparity metrics on hand-made numbers, and the SGBM baseline on an exact synthetic pair."""
import math

import numpy as np
import pytest

from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticStereo
from ros2_stereo_depth.evaluation.metrics import disparity_metrics, pool_metrics
from ros2_stereo_depth.evaluation.sgbm import sgbm_disparity


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


def test_explicit_masks_override_finiteness():
    gt = np.array([[5.0, 5.0], [5.0, 5.0]])
    pred = np.array([[5.0, 9.0], [5.0, 5.0]])
    m = disparity_metrics(pred, gt, gt_valid=np.array([[True, True], [False, False]]),
                          predicted=np.array([[True, False], [True, True]]))
    # Two valid pixels: one exact, one not predicted (its 9.0 is ignored: error = gt = 5).
    assert m["epe"] == pytest.approx(2.5) and m["epe_predicted"] == pytest.approx(0.0)
    assert m["bad2"] == pytest.approx(50.0) and m["density"] == pytest.approx(50.0)


def test_pooling_weights_by_pixels():
    a = disparity_metrics(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 4.0]]))  # 3 px, one bad
    b = disparity_metrics(np.array([[np.nan]]), np.array([[2.0]]))  # 1 px, missing
    pooled = pool_metrics([a, b])
    assert pooled["bad2"] == pytest.approx(100 * 2 / 4)
    assert pooled["epe"] == pytest.approx((0 + 0 + 3 + 2) / 4)
    assert pooled["epe_predicted"] == pytest.approx(3 / 3)
    assert pooled["density"] == pytest.approx(75.0)
    assert math.isnan(disparity_metrics(np.array([[np.nan]]), np.array([[2.0]]))["epe_predicted"])


def test_no_valid_ground_truth_is_an_error():
    with pytest.raises(ValueError):
        disparity_metrics(np.ones((2, 2)), np.zeros((2, 2)))


def test_sgbm_recovers_a_synthetic_pair():
    """Noise-free textured scene with exact disparity: SGBM should be right on most pixels it answers."""
    params = SceneParams(120, 160, 24.0, textureless_prob=0.0, repetitive_prob=0.0, thin_structure_prob=0.0)
    s = SyntheticStereo(params, seed=2, photometric=None)[0]
    disparity, predicted = sgbm_disparity(s.left, s.right, 24)
    assert disparity.dtype == np.float32 and predicted.dtype == bool
    assert np.all(np.isnan(disparity[~predicted])) and np.all(disparity[predicted] >= 0)
    # 24 is rounded up to 32 disparities; SGBM answers nothing in the 32 columns it cannot search.
    assert not predicted[:, :32].any() and predicted[:, 32:].any()
    m = disparity_metrics(disparity, s.disparity_px, ~s.occluded, predicted)
    assert m["epe_predicted"] < 1.0 and 50.0 < m["density"] < 100.0
