"""PyTorch backend: the network itself, for machines without TensorRT (CUDA or CPU)."""
from __future__ import annotations

import numpy as np
import torch

from ..weights import LoadedModel
from .base import StereoResult, normalise


class TorchBackend:
    name = "torch"

    def __init__(self, model: LoadedModel, height: int, width: int, device: str = "auto",
                 threads: int = 0) -> None:
        model.config.check_size(height, width)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.model = model
        self.net = model.net.to(device).eval()
        self.height, self.width = height, width
        self.max_disparity = model.config.max_disparity

    @torch.inference_mode()
    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        left = torch.from_numpy(normalise(left_rgb)).to(self.device)
        right = torch.from_numpy(normalise(right_rgb)).to(self.device)
        out = self.net(left, right)
        return StereoResult(out["disparity"][0, 0].float().cpu().numpy(),
                            out["confidence"][0, 0].float().cpu().numpy())
