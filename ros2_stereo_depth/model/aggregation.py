"""Stage 3: 3D-conv encoder-decoder over the (groups, D, H, W) cost volume."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv3d_bn(cin: int, cout: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv3d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm3d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def deconv3d_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm3d(cout),
    )


class Hourglass3d(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.down1 = nn.Sequential(conv3d_bn(c, 2 * c, stride=2), conv3d_bn(2 * c, 2 * c))
        self.down2 = nn.Sequential(conv3d_bn(2 * c, 4 * c, stride=2), conv3d_bn(4 * c, 4 * c))
        self.up2 = deconv3d_bn(4 * c, 2 * c)
        self.up1 = deconv3d_bn(2 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(d1)
        u1 = F.relu(self.up2(d2) + d1)
        return F.relu(self.up1(u1) + x)


class CostAggregation(nn.Module):
    """(N,G,D,H,W) correlation -> (N,D,H,W) matching cost logits (higher = better match)."""

    def __init__(self, groups: int, channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(conv3d_bn(groups, channels), conv3d_bn(channels, channels))
        self.hourglass = Hourglass3d(channels)
        self.classify = nn.Sequential(conv3d_bn(channels, channels), nn.Conv3d(channels, 1, 3, padding=1))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        x = self.hourglass(self.stem(volume))
        return self.classify(x).squeeze(1)
