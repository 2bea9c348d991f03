"""OpenCV StereoSGBM (3-way), the classical matcher: the node fuses its trusted matches with the network's
answer (inference/local_matching.py), and evaluation tunes it as the baseline (evaluation/sgbm.py)."""
from __future__ import annotations

import cv2
import numpy as np

BLOCK_SIZE = 5


def sgbm_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disparity: int,
                   block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) uint8 pair -> (disparity px float32, predicted bool). Searches 0..max_disparity-1,
    rounded up to OpenCV's multiple of 16; negative outputs (no match, left border, failed
    uniqueness / left-right check, speckles) are not predictions and are returned as NaN."""
    num_disparities = sgbm_num_disparities(max_disparity)
    channels = 3
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=num_disparities, blockSize=block_size,
        P1=8 * channels * block_size ** 2, P2=32 * channels * block_size ** 2,
        disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    # Channel order does not matter to SGBM's colour cost; the 16x fixed-point output is decoded here.
    raw = matcher.compute(np.ascontiguousarray(left_rgb), np.ascontiguousarray(right_rgb))
    disparity = raw.astype(np.float32) / 16.0
    predicted = raw >= 0
    disparity[~predicted] = np.nan
    return disparity, predicted


def sgbm_num_disparities(max_disparity: float) -> int:
    """OpenCV's numDisparities for a search range: the next multiple of 16 (at least 16)."""
    return max(16, -(-int(np.ceil(max_disparity)) // 16) * 16)


def fill_holes(disparity_px: np.ndarray, predicted: np.ndarray, max_gap_px: int | None = None) -> np.ndarray:
    """Each pixel without a prediction takes the smaller (the farther) of the nearest predictions left and
    right of it on its row; a row without any stays NaN. With max_gap_px, only holes that have a
    prediction on both sides at most max_gap_px apart are filled (the rest stay NaN). (H,W) float32."""
    h, w = disparity_px.shape
    columns = np.arange(w)[None, :]
    left = np.maximum.accumulate(np.where(predicted, columns, -1), axis=1)  # nearest predicted at or left
    right = np.minimum.accumulate(np.where(predicted, columns, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    from_left = np.where(left >= 0, disparity_px[rows, np.clip(left, 0, w - 1)], np.inf)
    from_right = np.where(right < w, disparity_px[rows, np.clip(right, 0, w - 1)], np.inf)
    background = np.minimum(from_left, from_right)
    if max_gap_px is not None:
        background[(left < 0) | (right >= w) | (right - left > max_gap_px)] = np.inf
    filled = np.where(predicted, disparity_px, np.where(np.isfinite(background), background, np.nan))
    return filled.astype(np.float32)


def sgbm_filled(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disparity: int,
                block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`sgbm_disparity` with its holes filled (`fill_holes`): (disparity px, predicted)."""
    filled = fill_holes(*sgbm_disparity(left_rgb, right_rgb, max_disparity, block_size))
    return filled, np.isfinite(filled)
