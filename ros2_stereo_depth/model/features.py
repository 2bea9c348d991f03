"""Stage 1: one shared-weight 2D CNN for both images."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn_relu(channels, channels, dilation=dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class FeatureExtractor(nn.Module):
    """Image (N,3,H,W) -> features (N,C,H/s,W/s), s = downsample.

    A small U-Net: the coarse 1/2s and 1/4s levels widen the receptive field (textureless regions
    need context) and are added back at 1/s, the cost-volume resolution.
    """

    def __init__(self, channels: int, downsample: int) -> None:
        super().__init__()
        c = channels
        layers = [conv_bn_relu(3, c // 2, stride=2), conv_bn_relu(c // 2, c // 2), conv_bn_relu(c // 2, c, stride=2)]
        if downsample == 8:
            layers.append(conv_bn_relu(c, c, stride=2))
        self.stem = nn.Sequential(*layers)
        self.level0 = nn.Sequential(ResidualBlock(c), ResidualBlock(c))
        self.down1 = nn.Sequential(conv_bn_relu(c, 2 * c, stride=2), ResidualBlock(2 * c))
        self.down2 = nn.Sequential(conv_bn_relu(2 * c, 2 * c, stride=2), ResidualBlock(2 * c, dilation=2))
        self.up1 = conv_bn_relu(2 * c, 2 * c)
        self.up0 = conv_bn_relu(2 * c, c)
        self.head = nn.Conv2d(c, c, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x0 = self.level0(self.stem(images))
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x1 = self.up1(x1 + F.interpolate(x2, scale_factor=2.0, mode="bilinear", align_corners=False))
        x0 = self.up0(F.interpolate(x1, scale_factor=2.0, mode="bilinear", align_corners=False)) + x0
        return self.head(x0)
