"""The classical baseline: OpenCV StereoSGBM (3-way), at a given search range or tuned on the ground truth.

Tuned (`tune_sgbm`): the best pooled dense bad-2 over numDisparities (every multiple of 16 up to 1.5x the
largest ground-truth disparity, and at least the first one that covers it) x block size {3, 5, 7}; one
setting for the whole dataset. The search range matters a lot: SGBM answers nothing in its leftmost
numDisparities columns, so a range much wider than the scene's costs it its left border.

Filled (`fill_holes`, TunedSgbm.filled): the same search with SGBM's holes filled from the background
along each row, the standard way (Middlebury, KITTI) to score a sparse method on a dense metric. On
Aloe this nearly halves SGBM's dense bad-2 (24.0 -> 13.4 % at full size): its holes, not its matches, are most
of its errors, so the filled SGBM is the stronger classical baseline and is reported beside the other.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..pair import StereoPair
from .metrics import disparity_metrics, pool_metrics

BLOCK_SIZE = 5
TUNED_BLOCK_SIZES = (3, 5, 7)
TUNED_RANGE_FACTOR = 1.5


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


def tuned_candidates(gt_max_px: float) -> list[int]:
    """numDisparities tried by the tuning: multiples of 16 up to 1.5x the largest ground truth, and at
    least up to the first one that covers it."""
    top = max(int(TUNED_RANGE_FACTOR * gt_max_px) // 16 * 16, sgbm_num_disparities(gt_max_px + 1))
    return list(range(16, top + 1, 16))


def fill_holes(disparity_px: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each pixel without a prediction takes the smaller (the farther) of the nearest predictions left and
    right of it on its row; a row without any stays NaN. (H,W) float32."""
    h, w = disparity_px.shape
    columns = np.arange(w)[None, :]
    left = np.maximum.accumulate(np.where(predicted, columns, -1), axis=1)  # nearest predicted at or left
    right = np.minimum.accumulate(np.where(predicted, columns, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    from_left = np.where(left >= 0, disparity_px[rows, np.clip(left, 0, w - 1)], np.inf)
    from_right = np.where(right < w, disparity_px[rows, np.clip(right, 0, w - 1)], np.inf)
    background = np.minimum(from_left, from_right)
    filled = np.where(predicted, disparity_px, np.where(np.isfinite(background), background, np.nan))
    return filled.astype(np.float32)


def sgbm_filled(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disparity: int,
                block_size: int = BLOCK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`sgbm_disparity` with its holes filled (`fill_holes`): (disparity px, predicted)."""
    filled = fill_holes(*sgbm_disparity(left_rgb, right_rgb, max_disparity, block_size))
    return filled, np.isfinite(filled)


@dataclass
class TunedSgbm:
    num_disparities: int
    block_size: int
    metrics: dict[str, float]  # pooled over the pairs at the chosen setting
    seconds_per_pair: float  # SGBM alone at the chosen setting
    search_seconds: float  # the whole grid search, every pair
    tried: list[dict[str, float]]  # num_disparities, block_size, bad2 (and bad2_filled) of each candidate
    filled: "TunedSgbm | None" = None  # the best setting with the holes filled (fill_holes), same grid


def tune_sgbm(pairs: Sequence[StereoPair], num_disparities: Sequence[int] | None = None,
              block_sizes: Sequence[int] = TUNED_BLOCK_SIZES) -> TunedSgbm:
    """Grid search for the setting with the lowest pooled dense bad-2 on `pairs` (with ground truth).
    The first best in the order (numDisparities, block size), both ascending, wins a tie."""
    if not pairs:
        raise ValueError("no pairs to tune SGBM on")
    if num_disparities is None:
        gt_max = max(float(p.disparity_px[p.valid].max()) for p in pairs if p.disparity_px is not None
                     and p.valid is not None and p.valid.any())
        num_disparities = tuned_candidates(gt_max)
    started = time.perf_counter()
    best: dict[bool, TunedSgbm] = {}
    tried = []
    for nd in num_disparities:
        for block in block_sizes:
            per_pair: dict[bool, list[dict[str, float]]] = {False: [], True: []}
            seconds = 0.0
            for p in pairs:
                t0 = time.perf_counter()
                disparity, predicted = sgbm_disparity(p.left, p.right, nd, block)
                seconds += time.perf_counter() - t0
                per_pair[False].append(disparity_metrics(disparity, p.disparity_px, p.valid, predicted))  # type: ignore[arg-type]
                filled = fill_holes(disparity, predicted)
                per_pair[True].append(disparity_metrics(filled, p.disparity_px, p.valid, np.isfinite(filled)))  # type: ignore[arg-type]
            pooled = {fill: pool_metrics(per_pair[fill]) for fill in (False, True)}
            tried.append({"num_disparities": nd, "block_size": block, "bad2": pooled[False]["bad2"],
                          "bad2_filled": pooled[True]["bad2"]})
            for fill in (False, True):
                if fill not in best or pooled[fill]["bad2"] < best[fill].metrics["bad2"]:
                    best[fill] = TunedSgbm(nd, block, pooled[fill], seconds / len(pairs), 0.0, tried)
    result = best[False]
    result.filled = best[True]
    result.search_seconds = result.filled.search_seconds = time.perf_counter() - started
    return result
