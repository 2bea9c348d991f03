"""geometry.StereoCamera: depth and 3D points from disparity by the pinhole model, baseline sign, scaling."""
from __future__ import annotations

import numpy as np
import pytest

from ros2_stereo_depth.geometry import StereoCamera


def projections(fx, fy, cx, cy, baseline, cx_right=None):
    pl = [fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0]
    pr = [fx, 0, cx if cx_right is None else cx_right, -fx * baseline, 0, fy, cy, 0, 0, 0, 1, 0]
    return pl, pr


def test_hand_computed_point():
    camera = StereoCamera.from_projection(*projections(400.0, 380.0, 320.0, 240.0, 0.1), 640, 480)
    disparity = np.zeros((480, 640), np.float32)
    disparity[140, 420] = 20.0
    points = camera.points_from_disparity(disparity)
    # z = 400 * 0.1 / 20 = 2 m; x = (420 - 320) * 2 / 400 = 0.5 m; y = (140 - 240) * 2 / 380 = -0.5263 m
    np.testing.assert_allclose(points[140, 420], [0.5, -200.0 / 380.0, 2.0], rtol=1e-6)
    assert np.isnan(points[0, 0]).all(), "zero disparity is infinitely far: invalid"
    assert camera.depth_from_disparity(np.float32([[20.0, 5.0]]))[0].tolist() == pytest.approx([2.0, 8.0])


def test_min_disparity_invalidates():
    camera = StereoCamera(100.0, 100.0, 1.0, 1.0, 0.5, 3, 3)
    depth = camera.depth_from_disparity(np.float32([[1.0, 2.0, np.nan]]), min_disparity_px=1.0)
    assert np.isnan(depth[0, 0]) and depth[0, 1] == pytest.approx(25.0) and np.isnan(depth[0, 2])


def test_baseline_sign_from_projection():
    pl, pr = projections(500.0, 500.0, 300.0, 200.0, 0.12)
    assert pr[3] == pytest.approx(-60.0)  # ROS convention: Tx = -fx * baseline
    assert StereoCamera.from_projection(pl, pr, 600, 400).baseline_m == pytest.approx(0.12)
    pr[3] = 60.0  # left/right swapped: negative baseline
    with pytest.raises(ValueError, match="baseline"):
        StereoCamera.from_projection(pl, pr, 600, 400)
    pr[3], pr[0] = -60.0, 0.0
    with pytest.raises(ValueError, match="focal length"):
        StereoCamera.from_projection(pl, pr, 600, 400)


def test_scaled_keeps_the_3d_point():
    camera = StereoCamera.from_projection(*projections(400.0, 400.0, 319.5, 239.5, 0.1), 640, 480)
    half = camera.scaled(320, 240)
    assert (half.fx_px, half.fy_px, half.cx_px, half.cy_px) == pytest.approx((200.0, 200.0, 159.5, 119.5))
    assert half.baseline_m == camera.baseline_m and (half.width, half.height) == (320, 240)
    # The same surface point: full-res pixel (420.5, 140.5) with d = 20 is half-res (210, 70) with d = 10,
    # using pixel-centre coordinates (u + 0.5) * s - 0.5.
    full = np.full((480, 640), 20.0, np.float32)
    small = np.full((240, 320), 10.0, np.float32)
    p_full = camera.points_from_disparity(full)[140:142, 420:422].mean(axis=(0, 1))
    p_half = half.points_from_disparity(small)[70, 210]
    np.testing.assert_allclose(p_half, p_full, rtol=1e-5)


def test_principal_point_offset():
    # True point X=0, Z=2 m, f=400, B=0.1: xl = 320, xr = 400*(0-0.1)/2 + 330 = 310, raw disparity 10.
    camera = StereoCamera.from_projection(*projections(400.0, 400.0, 320.0, 240.0, 0.1, cx_right=330.0), 640, 480)
    assert camera.delta_cx_px == 10.0
    assert camera.depth_from_disparity(np.float32([[10.0]]))[0, 0] == pytest.approx(2.0)
