"""PyTorch backend: the network itself, for machines without TensorRT (CUDA or CPU).

`replace_net` swaps the network (online adaptation, training/online.py): every call reads the network
once, so a call in progress finishes with the network it started with and never sees a mixture.
Inference runs a copy with the batch norms folded into the convolutions (model/deploy.py: fewer kernels,
same numbers); `self.net` stays the trainable network that adaptation copies.

On CUDA: the shared CudaRunner (uint8 upload and normalisation on the GPU, optional CUDA-graph replay
after the first frame); fp16 is the fp16 engine's split (model/deploy.py `half_stages`: the
feature CNN, cost volume and 3D aggregation in half precision, the regression and refinement in fp32),
with casts at the stage boundaries only; the convolutions run channels-last (`channels_last_net`: no
layout transposes around cuDNN's kernels). On CPU: fp32, the plain path. Thread counts are the caller's.
"""
from __future__ import annotations

import numpy as np
import torch

from ..artifacts.weights import LoadedModel
from ..config import INPUT_NAMES, OUTPUT_NAMES, TORCH_PRECISIONS
from ..model.deploy import channels_last_net, fold_batchnorm, half_stages
from ..normalisation import normalise
from .base import StereoResult
from .cuda_runner import CudaRunner


class TorchBackend:
    name = "torch"

    def __init__(self, model: LoadedModel, height: int, width: int, device: str = "auto",
                 precision: str = "fp16", cuda_graphs: bool = False, threads: int = 0) -> None:
        """threads > 0: the caller asks for this many CPU threads (process-wide in PyTorch)."""
        model.config.check_size(height, width)
        if precision not in TORCH_PRECISIONS:
            raise ValueError(f"torch backend precision must be one of {TORCH_PRECISIONS}, not {precision!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = device
        self.cuda_graphs = cuda_graphs
        self.model = model
        self.net = model.net.to(device).eval()
        cuda = self.cuda = torch.device(device).type == "cuda"
        # fp16 only pays off (and is only exercised) on CUDA; CPU runs fp32.
        self.precision = precision if cuda else "fp32"
        self.inference_net = self._inference_copy(self.net)
        self.height, self.width = height, width
        self.max_disparity = model.config.max_disparity
        self.runner: CudaRunner | None = None
        if cuda:
            # One input size for the backend's life: let cuDNN time its kernels once and keep the fastest.
            torch.backends.cudnn.benchmark = True
            inputs = {name: torch.empty(1, 3, height, width, device=device) for name in INPUT_NAMES}
            self.runner = CudaRunner(height, width, torch.device(device), inputs, lambda: self._forward(inputs),
                                     cuda_graphs)

    def replace_net(self, net: torch.nn.Module) -> None:
        """Use `net` (same config, eval mode, on this device) from the next call on. One reference
        assignment: atomic, and no lock that inference would wait for."""
        if self.cuda_graphs:
            # A captured graph replays the old weights' memory: the new network would be silently ignored.
            raise ValueError("replace_net is not possible with cuda_graphs")
        self.inference_net = self._inference_copy(net)
        self.net = net

    def _inference_copy(self, net: torch.nn.Module) -> torch.nn.Module:
        copy = fold_batchnorm(net)  # the one copy: the conversions below change it in place
        if self.precision == "fp16":
            half_stages(copy)
        # Measured on CUDA only (an H100: fast 640x480 fp16 with a graph 1.81 -> 1.49 ms); CPU keeps NCHW.
        return channels_last_net(copy) if self.cuda else copy

    def _forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.inference_net(*(inputs[name] for name in INPUT_NAMES))
        return {name: out[name] for name in OUTPUT_NAMES}

    @torch.inference_mode()
    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        if self.runner is not None:
            return self.runner.run(left_rgb, right_rgb)
        net = self.inference_net  # once: replace_net may swap it while this call runs
        out = net(torch.from_numpy(normalise(left_rgb)), torch.from_numpy(normalise(right_rgb)))
        return StereoResult(out["disparity"][0, 0].float().numpy(), out["confidence"][0, 0].float().numpy())
