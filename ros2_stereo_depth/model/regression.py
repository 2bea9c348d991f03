"""Stage 4: softmax over D, soft-argmin to sub-pixel disparity, confidence = peak probability."""
from __future__ import annotations

import torch
from torch import nn


class SoftArgminRegression(nn.Module):
    def __init__(self, num_disparities: int, step_px: float) -> None:
        super().__init__()
        # A constant, so the exported graph does no index arithmetic.
        values = torch.arange(num_disparities, dtype=torch.float32) * step_px
        self.register_buffer("disparity_values", values.view(1, -1, 1, 1), persistent=False)

    def forward(self, cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cost (N,D,H,W) -> disparity_px, confidence, both (N,1,H,W) fp32.

        Done in fp32 even in an fp16 graph: fp16 softmax over ~50 bins loses the sub-pixel part.
        """
        prob = torch.softmax(cost.float(), dim=1)
        disparity = (prob * self.disparity_values).sum(dim=1, keepdim=True)
        confidence = prob.amax(dim=1, keepdim=True)
        return disparity, confidence
