"""The pairs an evaluation runs on: a dataset directory or one pair of files, optionally rescaled."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..data.readers import PairFiles, ground_truth_reader, open_eval_dataset
from ..pair import StereoPair


def single_pair(left: str, right: str, gt: str, gt_scale: float = 1.0) -> tuple[str, StereoPair]:
    """One pair of files with ground truth; errors name the ground-truth file (size, colour)."""
    files = PairFiles(str(gt), Path(left), Path(right), ground_truth_reader(Path(gt), gt_scale))
    return str(left), files.load()


def evaluation_pairs(dataset: str | None, data_format: str = "auto", gt_scale: float | None = None,
                     left: str | None = None, right: str | None = None,
                     gt: str | None = None) -> Iterator[tuple[str, StereoPair]]:
    """(name, full-resolution StereoPair with ground truth) from --dataset or from --left/--right/--gt."""
    if dataset:
        for name, item in open_eval_dataset(dataset, data_format, gt_scale):
            if item.disparity_px is None:
                raise ValueError(f"{name}: no ground truth to evaluate against")
            yield name, item
        return
    if not (left and right and gt):
        raise ValueError("give --dataset DIR, or --left, --right and --gt")
    yield single_pair(left, right, gt, gt_scale or 1.0)


def rescale_pair(item: StereoPair, scale: float) -> StereoPair:
    """Images by INTER_AREA; ground truth by nearest neighbour, values times the actual width ratio
    (= scale up to the rounding of the size), so that every number is in px at the new size."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    if scale == 1.0:
        return item
    h, w = item.left.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def resize(image: np.ndarray, mode: int) -> np.ndarray:
        return np.asarray(cv2.resize(image, size, interpolation=mode))

    left, right = resize(item.left, cv2.INTER_AREA), resize(item.right, cv2.INTER_AREA)
    if item.disparity_px is None or item.valid is None:
        return StereoPair(left, right, None, None)
    disparity = resize(item.disparity_px, cv2.INTER_NEAREST) * np.float32(size[0] / w)
    valid = resize(item.valid.astype(np.uint8), cv2.INTER_NEAREST) > 0
    return StereoPair(left, right, disparity, valid)
