"""Network input normalisation: one home for the constants every backend, export and loss uses."""
from __future__ import annotations

import numpy as np

# ImageNet statistics on RGB in [0, 1]; recorded in every export sidecar.
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
NORMALISATION = {"input": "RGB float32 in [0, 1], N x 3 x H x W", "mean": list(MEAN_RGB), "std": list(STD_RGB)}


def normalise(rgb_uint8: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 RGB -> (1,3,H,W) float32 normalised network input."""
    x = rgb_uint8.astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(MEAN_RGB, np.float32)) / np.asarray(STD_RGB, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
