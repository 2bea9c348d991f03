"""Between regression and refinement: learned convex upsampling of the coarse disparity (RAFT-Stereo).

Bilinear upsampling of a 1/8-resolution disparity smears every depth edge over 8 pixels, and thin
structures (leaves, wires) vanish. Instead each fine pixel takes a convex combination of its 3x3
coarse neighbours, with weights predicted from the left image's features: at an edge the weights
pick the neighbours on the pixel's own side. TensorRT-clean: Pad (edge), Slice, Concat, Softmax,
Reshape and DepthToSpace, all with static shapes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .features import conv_bn_relu


class ConvexUpsampling(nn.Module):
    def __init__(self, feature_channels: int, factor: int, hidden_channels: int = 64) -> None:
        super().__init__()
        self.factor = factor
        self.mask = nn.Sequential(conv_bn_relu(feature_channels, hidden_channels),
                                  nn.Conv2d(hidden_channels, 9 * factor * factor, 1))
        # Start as equal weights (a 3x3 box upsampling): weights loaded from a bilinear network then
        # begin close to what they were trained with, and a fresh one starts smooth.
        nn.init.zeros_(self.mask[-1].weight)
        nn.init.zeros_(self.mask[-1].bias)

    def forward(self, disparity: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """disparity (N,1,h,w) in input-resolution px, features (N,C,h,w) of the left image
        -> (N,1,h*factor,w*factor). The values are not rescaled: they are already input pixels."""
        n, _, h, w = (int(s) for s in disparity.shape)
        f = self.factor
        # fp32 like the regression: in the fp16 graph the features arrive in half precision.
        weights = torch.softmax(self.mask(features.to(disparity.dtype)).reshape(n, 9, f * f, h, w), dim=1)
        padded = F.pad(disparity, (1, 1, 1, 1), mode="replicate")
        neighbours = torch.cat([padded[:, :, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], dim=1)
        fine = (weights * neighbours.reshape(n, 9, 1, h, w)).sum(dim=1)  # (N, f*f, h, w)
        return F.pixel_shuffle(fine, f)
