"""Training losses.

Supervised: smooth-L1 over pixels with valid ground truth, on the final and intermediate outputs.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

# Weight of each network output in the supervised loss (final output weighted most).
OUTPUT_WEIGHTS = {"disparity": 1.0, "disparity_coarse": 0.5}


def supervised_loss(outputs: dict[str, torch.Tensor], disparity_gt: torch.Tensor,
                    valid: torch.Tensor) -> torch.Tensor:
    """outputs: the network's dict; disparity_gt (N,1,H,W) px; valid (N,1,H,W) bool.

    Zero for a perfect prediction; grows with the error. Averaged over valid pixels only."""
    count = valid.sum().clamp(min=1)
    total = disparity_gt.new_zeros(())
    for key, weight in OUTPUT_WEIGHTS.items():
        if key not in outputs:
            continue
        error = F.smooth_l1_loss(outputs[key], disparity_gt, reduction="none")
        total = total + weight * (error * valid).sum() / count
    return total
