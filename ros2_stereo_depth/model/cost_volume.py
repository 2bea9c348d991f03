"""Stage 2: group-wise correlation cost volume over disparities 0..D-1.

TensorRT wants a graph whose size does not depend on D, with static shapes, no gather/scatter and
no index arithmetic at run time. So instead of shifting the right features D times we
  1. correlate every left pixel with every right pixel of the same row (one batched MatMul),
  2. read the band x' = x - d out of that W x W matrix with the "skew" trick: after flipping the
     right image's columns and padding each row by D, the element wanted for (x, d) sits at
     flat offset W-1 + x*(W+D-1) + d, i.e. a Slice and a Reshape bring band d into column d.
Every op is MatMul, Slice, Pad or Reshape with constant shapes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GroupwiseCorrelation(nn.Module):
    def __init__(self, groups: int, num_disparities: int) -> None:
        super().__init__()
        self.groups = groups
        self.num_disparities = num_disparities

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """left, right: (N,C,H,W) -> (N, groups, D, H, W); entries with x - d < 0 are 0."""
        n, c, h, w = (int(s) for s in left.shape)
        g, d = self.groups, self.num_disparities
        cg = c // g
        # (N,G,H,W,Cg) @ (N,G,H,Cg,W) -> (N,G,H,W,W'); the right columns flipped: x' -> W-1-x'.
        lhs = left.reshape(n, g, cg, h, w).permute(0, 1, 3, 4, 2)
        rhs = torch.flip(right, dims=[3]).reshape(n, g, cg, h, w).permute(0, 1, 3, 2, 4)
        pairs = torch.matmul(lhs, rhs) * (1.0 / cg)
        pairs = F.pad(pairs, (0, d))  # (N,G,H,W,W+D); the padding is the x - d < 0 region
        flat = pairs.reshape(n, g, h, w * (w + d))
        band = flat[..., w - 1: w - 1 + w * (w + d - 1)].reshape(n, g, h, w, w + d - 1)[..., :d]
        return band.permute(0, 1, 4, 2, 3)  # (N,G,D,H,W)


def reference_groupwise_correlation(left: torch.Tensor, right: torch.Tensor, groups: int,
                                    num_disparities: int) -> torch.Tensor:
    """The textbook per-disparity loop; the tests hold the skewed version to it."""
    n, c, h, w = left.shape
    volume = left.new_zeros(n, groups, num_disparities, h, w)
    for d in range(num_disparities):
        prod = (left[..., d:] * right[..., : w - d]).reshape(n, groups, c // groups, h, w - d)
        volume[:, :, d, :, d:] = prod.mean(dim=2)
    return volume
