"""From dataset items to training batches: random crops (a dataset transformation, so it lives with the data) and tensors."""
from __future__ import annotations

import numpy as np
import torch

from ..normalisation import normalise
from ..pair import StereoPair


def random_crop(item: StereoPair, height: int, width: int, rng: np.random.Generator) -> StereoPair:
    h, w = item.left.shape[:2]
    if h < height or w < width:
        raise ValueError(f"item of {w}x{h} is smaller than the crop {width}x{height}")
    y = int(rng.integers(0, h - height + 1))
    x = int(rng.integers(0, w - width + 1))
    crop = (slice(y, y + height), slice(x, x + width))
    return StereoPair(item.left[crop], item.right[crop],
                     None if item.disparity_px is None else item.disparity_px[crop],
                     None if item.valid is None else item.valid[crop])


def collate(items: list[StereoPair], max_disparity: float) -> dict[str, torch.Tensor]:
    """Stack into normalised image tensors; ground truth beyond the searched range is not valid."""
    batch = {
        "left": torch.from_numpy(np.concatenate([normalise(i.left) for i in items])),
        "right": torch.from_numpy(np.concatenate([normalise(i.right) for i in items])),
    }
    if all(i.disparity_px is not None for i in items):
        disparity = np.stack([i.disparity_px for i in items])[:, None].astype(np.float32)
        valid = np.stack([i.valid for i in items])[:, None] & np.isfinite(disparity)
        valid &= (disparity >= 0) & (disparity < max_disparity)
        batch["disparity"] = torch.from_numpy(np.nan_to_num(disparity, nan=0.0, posinf=0.0))
        batch["valid"] = torch.from_numpy(valid)
    return batch
