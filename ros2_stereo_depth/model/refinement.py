"""Optional step after regression: an edge-aware 2D residual refinement at half resolution.

Upsampling a 1/4-resolution disparity blurs object edges; a few dilated convolutions that see the
left image sharpen them again. Half resolution keeps it cheap at 640x480.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .features import ResidualBlock, conv_bn_relu


# Disparities are divided by this before entering the network and residuals multiplied by it. A
# constant, not max_disparity: the weights must not depend on how many disparities are searched.
DISPARITY_SCALE_PX = 128.0


class DisparityRefinement(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = 1.0 / DISPARITY_SCALE_PX
        self.stem = conv_bn_relu(4, channels)
        self.body = nn.Sequential(*(ResidualBlock(channels, dilation) for dilation in (1, 2, 4, 8, 1)))
        self.residual = nn.Conv2d(channels, 1, 3, padding=1)
        # Start as the identity: a random head would add residuals of tens of pixels.
        nn.init.zeros_(self.residual.weight)
        nn.init.zeros_(self.residual.bias)

    def forward(self, image_half: torch.Tensor, disparity_half: torch.Tensor) -> torch.Tensor:
        """Both at half input resolution; disparity in input-resolution pixels."""
        x = self.stem(torch.cat([image_half, disparity_half * self.scale], dim=1))
        residual = self.residual(self.body(x)) / self.scale
        return F.relu(disparity_half + residual)
