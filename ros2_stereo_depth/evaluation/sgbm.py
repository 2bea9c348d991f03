"""The classical baseline: OpenCV StereoSGBM (3-way), at a given search range or tuned on the ground truth.

Tuned (`tune_sgbm`): the best pooled dense bad-2 over numDisparities (every multiple of 16 up to 1.5x the
largest ground-truth disparity, and at least the first one that covers it) x block size {3, 5, 7}; one
setting for the whole dataset. The search range matters a lot: SGBM answers nothing in its leftmost
numDisparities columns, so a range much wider than the scene's costs it its left border.

Filled (inference/sgbm.py `fill_holes`, TunedSgbm.filled): the same search with SGBM's holes filled
from the background along each row, the standard way (Middlebury, KITTI) to score a sparse method on a
dense metric. On Aloe this nearly halves SGBM's dense bad-2 (24.0 -> 13.4 % at full size): its holes, not
its matches, are most of its errors, so the filled SGBM is the stronger classical baseline and is
reported beside the other.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..inference.sgbm import fill_holes, sgbm_disparity, sgbm_num_disparities
from ..pair import StereoPair
from .metrics import disparity_metrics, pool_metrics

TUNED_BLOCK_SIZES = (3, 5, 7)
TUNED_RANGE_FACTOR = 1.5


def tuned_candidates(gt_max_px: float) -> list[int]:
    """numDisparities tried by the tuning: multiples of 16 up to 1.5x the largest ground truth, and at
    least up to the first one that covers it."""
    top = max(int(TUNED_RANGE_FACTOR * gt_max_px) // 16 * 16, sgbm_num_disparities(gt_max_px + 1))
    return list(range(16, top + 1, 16))


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
