"""Proxy labels for confidence-guided adaptation: SGBM disparities that survive a left-right check.

SGBM (inference/sgbm.py) is run on the pair and on the mirrored pair (the right view's disparity); a
left pixel keeps its SGBM disparity d only when the right view's disparity where it lands, at x - d,
agrees within `LR_TOLERANCE_PX`. Occlusions, repeated texture and textureless areas fail that check
(or SGBM leaves them empty), so what remains is a sparse set of confident matches that pulls the
network towards the geometry of the new camera without any ground truth.
"""
from __future__ import annotations

import numpy as np
import torch

from ..inference.sgbm import sgbm_disparity
from .losses import unnormalise

LR_TOLERANCE_PX = 1.0


def lr_checked_sgbm(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disparity: int,
                    tolerance_px: float = LR_TOLERANCE_PX) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) uint8 pair -> (disparity px float32, 0 where not kept; kept bool)."""
    left_d, left_ok = sgbm_disparity(left_rgb, right_rgb, max_disparity)
    mirrored_d, mirrored_ok = sgbm_disparity(np.ascontiguousarray(right_rgb[:, ::-1]),
                                             np.ascontiguousarray(left_rgb[:, ::-1]), max_disparity)
    kept = lr_consistent(left_d, left_ok, mirrored_d[:, ::-1], mirrored_ok[:, ::-1], tolerance_px)
    return np.where(kept, left_d, 0.0).astype(np.float32), kept


def lr_consistent(left_px: np.ndarray, left_ok: np.ndarray, right_px: np.ndarray, right_ok: np.ndarray,
                  tolerance_px: float = LR_TOLERANCE_PX) -> np.ndarray:
    """(H,W) bool: left pixels with a disparity d whose landing pixel in the right view, x - round(d), is
    inside the image, has a right-view disparity, and that disparity is within tolerance_px of d."""
    h, w = left_px.shape
    left = np.nan_to_num(left_px, nan=0.0)
    landed = np.arange(w)[None, :] - np.rint(left).astype(np.int64)
    column = np.clip(landed, 0, w - 1)
    rows = np.arange(h)[:, None]
    there = np.nan_to_num(right_px[rows, column], nan=np.inf)
    return left_ok & (landed >= 0) & right_ok[rows, column] & (np.abs(left - there) <= tolerance_px)


def proxy_batch(left: torch.Tensor, right: torch.Tensor, max_disparity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (N,3,H,W) batch -> (disparity (N,1,H,W), kept (N,1,H,W) bool) on the batch's device."""
    def uint8(images: torch.Tensor) -> np.ndarray:
        rgb = unnormalise(images.detach().float().cpu()).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return np.rint(rgb * 255.0).astype(np.uint8)
    labels = [lr_checked_sgbm(l, r, max_disparity) for l, r in zip(uint8(left), uint8(right))]
    disparity = torch.from_numpy(np.stack([d for d, _ in labels])[:, None]).to(left.device)
    kept = torch.from_numpy(np.stack([k for _, k in labels])[:, None]).to(left.device)
    return disparity, kept
