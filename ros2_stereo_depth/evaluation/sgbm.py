"""The classical baseline: OpenCV StereoSGBM with fixed, documented parameters."""
from __future__ import annotations

import cv2
import numpy as np

BLOCK_SIZE = 5


def sgbm_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disparity: int) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) uint8 pair -> (disparity px float32, predicted bool). Searches 0..max_disparity-1,
    rounded up to OpenCV's multiple of 16; negative outputs (no match, left border, failed
    uniqueness / left-right check, speckles) are not predictions and are returned as NaN."""
    num_disparities = max(16, -(-int(max_disparity) // 16) * 16)
    channels = 3
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num_disparities, blockSize=BLOCK_SIZE,
        P1=8 * channels * BLOCK_SIZE ** 2, P2=32 * channels * BLOCK_SIZE ** 2,
        disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    # Channel order does not matter to SGBM's colour cost; the 16x fixed-point output is decoded here.
    raw = matcher.compute(np.ascontiguousarray(left_rgb), np.ascontiguousarray(right_rgb))
    disparity = raw.astype(np.float32) / 16.0
    predicted = raw >= 0
    disparity[~predicted] = np.nan
    return disparity, predicted
