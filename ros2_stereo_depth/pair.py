"""The shared stereo-pair type: what readers, the synthetic generator, training and evaluation pass around."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StereoPair:
    left: np.ndarray  # (H,W,3) uint8 RGB
    right: np.ndarray  # (H,W,3) uint8 RGB
    disparity_px: np.ndarray | None  # (H,W) float32; None without ground truth
    valid: np.ndarray | None  # (H,W) bool
