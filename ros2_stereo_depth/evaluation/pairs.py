"""The pairs an evaluation runs on: a dataset directory or one pair of files, optionally rescaled."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..data.heldout_bag import GROUND_TRUTH_FILE, read_heldout_ground_truth
from ..data.readers import PairFiles, ground_truth_reader, open_eval_dataset
from ..pair import StereoPair


def single_pair(left: str, right: str, gt: str, gt_scale: float = 1.0) -> tuple[str, StereoPair]:
    """One pair of files with ground truth; errors name the ground-truth file (size, colour)."""
    files = PairFiles(str(gt), Path(left), Path(right), ground_truth_reader(Path(gt), gt_scale))
    return str(left), files.load()


def heldout_pairs(directory: str | Path, frames: str = "") -> Iterator[tuple[str, StereoPair]]:
    """The frames of a held-out-domain recording (data/heldout_bag.py: DIR/bag + DIR/ground_truth.npz) with
    their ground truth, every pixel valid (the disparity is exact, occluded pixels included).
    frames: 'START:END' (Python slice of the frame indices, e.g. '40:60' or '40:'); empty: all."""
    from ..data.bags import StereoBag  # noqa: PLC0415 (rosbags only for a bag)
    d = Path(directory)
    truth = read_heldout_ground_truth(d / GROUND_TRUTH_FILE)
    selected = slice(*(int(v) if v else None for v in frames.split(":"))) if frames else slice(None)
    wanted = set(sorted(truth)[selected])
    for index, frame in enumerate(StereoBag(d / "bag")):
        if frame.stamp_ns in wanted:
            disparity, _ = truth[frame.stamp_ns]
            yield (f"frame {index}", StereoPair(frame.pair.left, frame.pair.right, disparity.astype(np.float32),
                                                np.ones(disparity.shape, bool)))


def is_heldout_recording(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / GROUND_TRUTH_FILE).is_file() and (d / "bag").is_dir()


def evaluation_pairs(dataset: str | None, data_format: str = "auto", gt_scale: float | None = None,
                     left: str | None = None, right: str | None = None,
                     gt: str | None = None, frames: str = "") -> Iterator[tuple[str, StereoPair]]:
    """(name, full-resolution StereoPair with ground truth) from --dataset or from --left/--right/--gt.
    A held-out-domain recording (DIR/bag + DIR/ground_truth.npz) is a dataset too; `frames` selects."""
    if frames and not (dataset and is_heldout_recording(dataset)):
        raise ValueError("--frames selects frames of a held-out-domain recording (DIR/bag + DIR/ground_truth.npz)")
    if dataset and is_heldout_recording(dataset):
        yield from heldout_pairs(dataset, frames)
        return
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
