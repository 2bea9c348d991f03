"""Label-free quality of a disparity map: how well it explains the stereo pair, without ground truth.

The same terms the self-supervised loss trains on (training/losses.py, reused here, not repeated):
  photometric      0.85 (1 - SSIM)/2 + 0.15 L1 between the left image and the right image warped into the
                   left view by the disparity, over left pixels visible in the right view (not occluded,
                   not outside it); 0 for a perfect match, images in [0, 1]
  lr_consistency_px  |d_left - d_right sampled where each left pixel lands|, over the same visible pixels
  visible_fraction share of left pixels both terms cover (declaring pixels occluded would shrink it)
  disparity_spread_px  the 95th minus the 5th percentile of the left disparity: the depth range seen. A
                   network that collapses towards one disparity everywhere (the degenerate answer of
                   photometric + smoothness losses on weak texture and noise) can lower both errors,
                   but not keep its spread (training/validation.py keeps no such weights)
The right-view disparity is what the same predictor gives for the mirrored pair (right image mirrored as
the left one), as training does. Lower is better for both errors; use them to compare weights on
held-out frames of a recording, not as an accuracy figure (a textureless wall matches at any disparity).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..pair import StereoPair
from ..training.losses import self_supervised_terms

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (left RGB, right RGB) uint8 -> (H,W) disparity px


def _images(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H,W,3) uint8 array -> (1,3,H,W) in [0,1]; a tensor is taken as (N,3,H,W) in [0,1] already."""
    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.from_numpy(np.array(x, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0  # a copy: bag data is read-only


def _disparity(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H,W) array -> (1,1,H,W); a tensor is taken as (N,1,H,W)."""
    if isinstance(x, torch.Tensor):
        return x.float()
    return torch.from_numpy(np.array(x, dtype=np.float32))[None, None]


@torch.no_grad()
def label_free_terms(left: np.ndarray | torch.Tensor, right: np.ndarray | torch.Tensor,
                     disparity_px: np.ndarray | torch.Tensor,
                     disparity_right_px: np.ndarray | torch.Tensor) -> dict[str, float]:
    """One pair (or a batch): images (H,W,3) uint8 or (N,3,H,W) in [0,1]; disparities (H,W) or (N,1,H,W)."""
    left_t, right_t = _images(left), _images(right)
    disparity, disparity_right = _disparity(disparity_px), _disparity(disparity_right_px)
    terms = self_supervised_terms(left_t, right_t, disparity, disparity_right)
    low, high = torch.quantile(disparity.flatten(1), disparity.new_tensor([0.05, 0.95]), dim=1)
    return {"photometric": float(terms["photometric"]), "lr_consistency_px": float(terms["lr_consistency"]),
            "visible_fraction": float(terms["visible_fraction"]), "disparity_spread_px": float((high - low).mean())}


def mirrored(predict: Predictor, left_rgb: np.ndarray, right_rgb: np.ndarray) -> np.ndarray:
    """The right view's disparity from a left-view predictor: mirrored, the right image is a left image."""
    flipped = predict(np.ascontiguousarray(right_rgb[:, ::-1]), np.ascontiguousarray(left_rgb[:, ::-1]))
    return np.ascontiguousarray(flipped[:, ::-1])


@dataclass(frozen=True)
class LabelFreeReport:
    pairs: int
    photometric: float  # mean over pairs
    lr_consistency_px: float
    visible_fraction: float
    disparity_spread_px: float


def label_free_report(predict: Predictor, pairs: Iterable[StereoPair]) -> LabelFreeReport:
    """Mean label-free terms of `predict` over held-out pairs (two predictions per pair: left and mirrored).

    `predict` could be `lambda l, r: infer_at_image_size(backend, l, r).disparity_px`."""
    rows = []
    for pair in pairs:
        disparity = predict(pair.left, pair.right)
        rows.append(label_free_terms(pair.left, pair.right, disparity, mirrored(predict, pair.left, pair.right)))
    if not rows:
        raise ValueError("no pairs to evaluate")
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    return LabelFreeReport(len(rows), mean["photometric"], mean["lr_consistency_px"], mean["visible_fraction"],
                           mean["disparity_spread_px"])
