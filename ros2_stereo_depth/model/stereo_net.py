"""The whole network: features -> cost volume -> 3D aggregation -> regression -> upsampling (-> refinement)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from .aggregation import CostAggregation
from .cost_volume import GroupwiseCorrelation
from .features import FeatureExtractor
from .refinement import DisparityRefinement
from .regression import SoftArgminRegression
from .upsampling import ConvexUpsampling


class StereoNet(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        s = config.downsample
        self.features = FeatureExtractor(config.feature_channels, s)
        self.cost_volume = GroupwiseCorrelation(config.groups, config.max_disparity // s)
        self.aggregation = CostAggregation(config.groups, config.aggregation_channels)
        self.regression = SoftArgminRegression(config.max_disparity // s, float(s))
        self.refinement = DisparityRefinement(config.aggregation_channels) if config.refine else None
        # Convex upsampling goes to the refinement's half resolution, or straight to full resolution.
        factor = s // 2 if config.refine else s
        self.upsampling = ConvexUpsampling(config.feature_channels, factor) if config.upsample == "convex" else None

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> dict[str, torch.Tensor]:
        """left, right: normalised (N,3,H,W). Returns full-resolution `disparity` (px, N,1,H,W),
        `confidence` (N,1,H,W, in [0,1]) and, for training, `disparity_coarse` (before refinement,
        upsampled to full resolution)."""
        n = int(left.shape[0])
        h, w = int(left.shape[2]), int(left.shape[3])
        feats = self.features(torch.cat([left, right], dim=0))  # shared weights: one pass
        volume = self.cost_volume(feats[:n], feats[n:])
        cost = self.aggregation(volume)
        disparity, confidence = self.regression(cost)
        if self.upsampling is not None:
            disparity = self.upsampling(disparity, feats[:n])
        coarse = F.interpolate(disparity, size=(h, w), mode="bilinear", align_corners=False)
        if self.refinement is not None:
            half = (h // 2, w // 2)
            disparity_half = disparity if tuple(disparity.shape[2:]) == half else F.interpolate(
                disparity, size=half, mode="bilinear", align_corners=False)
            image_half = F.avg_pool2d(left, 2)
            refined = self.refinement(image_half, disparity_half)
            full = F.interpolate(refined, size=(h, w), mode="bilinear", align_corners=False)
        else:
            full = coarse
        confidence = F.interpolate(confidence, size=(h, w), mode="bilinear", align_corners=False)
        return {"disparity": full, "confidence": confidence, "disparity_coarse": coarse}


class ExportWrapper(nn.Module):
    """The graph that is exported: two inputs, two named outputs, nothing for training."""

    def __init__(self, net: StereoNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(left, right)
        return out["disparity"], out["confidence"]
