"""PyTorch backend: the network itself, for machines without TensorRT (CUDA or CPU).

On CUDA: uint8 upload and normalisation on the GPU, fp16 autocast (the soft-argmin regression casts
to fp32 itself, and autocast keeps softmax in fp32 anyway) and optional CUDA-graph replay after the
first frame. On CPU: fp32, the plain path.
"""
from __future__ import annotations

import numpy as np
import torch

from ..weights import LoadedModel
from ..normalisation import MEAN_RGB, STD_RGB, normalise
from .base import StereoResult

PRECISIONS = ("fp32", "fp16")


class GpuNormaliser:
    """(H,W,3) uint8 RGB frames -> normalised (1,3,H,W) network input, computed on `device`.

    Uploads 2 x H x W x 3 bytes per frame instead of 2 x 3 x H x W floats; the staging buffers are
    allocated once (pinned host memory when on CUDA, so the copy can be asynchronous)."""

    def __init__(self, height: int, width: int, device: torch.device) -> None:
        self.height, self.width = height, width
        host = torch.empty(2, height, width, 3, dtype=torch.uint8)
        self.host = host.pin_memory() if device.type == "cuda" else host
        self.frames = torch.empty(2, height, width, 3, dtype=torch.uint8, device=device)
        # (x/255 - mean)/std == (x - 255 mean) * 1/(255 std): one subtract and one multiply.
        self.offset = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1) * 255.0
        self.scale = 1.0 / (torch.tensor(STD_RGB, device=device).view(1, 3, 1, 1) * 255.0)

    def _check(self, rgb: np.ndarray) -> None:
        if rgb.shape != (self.height, self.width, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"expected a {self.width}x{self.height} uint8 RGB image, got {rgb.shape} {rgb.dtype}")

    def upload(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> None:
        """Enqueue the upload on the current stream; the caller synchronises before the next upload."""
        self._check(left_rgb)
        self._check(right_rgb)
        self.host[0].copy_(torch.from_numpy(np.ascontiguousarray(left_rgb)))
        self.host[1].copy_(torch.from_numpy(np.ascontiguousarray(right_rgb)))
        self.frames.copy_(self.host, non_blocking=True)

    def normalise_into(self, index: int, out: torch.Tensor) -> None:
        """Frame `index` (0 left, 1 right) into `out` (1,3,H,W), in out's dtype; no allocation kept."""
        x = self.frames[index].permute(2, 0, 1).unsqueeze(0).float()
        out.copy_((x - self.offset) * self.scale)

    def write(self, rgb: np.ndarray, out: torch.Tensor) -> None:
        """One image straight into `out` (INT8 calibration)."""
        self._check(rgb)
        self.host[0].copy_(torch.from_numpy(np.ascontiguousarray(rgb)))
        self.frames[0].copy_(self.host[0])
        self.normalise_into(0, out)


class TorchBackend:
    name = "torch"

    def __init__(self, model: LoadedModel, height: int, width: int, device: str = "auto",
                 threads: int = 0, precision: str = "fp16", cuda_graphs: bool = False) -> None:
        model.config.check_size(height, width)
        if precision not in PRECISIONS:
            raise ValueError(f"torch backend precision must be one of {PRECISIONS}, not {precision!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self.model = model
        self.net = model.net.to(device).eval()
        self.height, self.width = height, width
        self.max_disparity = model.config.max_disparity
        cuda = torch.device(device).type == "cuda"
        # fp16 only pays off (and is only exercised) on CUDA; CPU runs fp32.
        self.precision = precision if cuda else "fp32"
        self.use_cuda_graphs = cuda_graphs and cuda
        self.graph: torch.cuda.CUDAGraph | None = None
        self.frames = 0
        if cuda:
            self.stream = torch.cuda.Stream(torch.device(device))
            self.normaliser = GpuNormaliser(height, width, torch.device(device))
            self.inputs = torch.empty(2, 1, 3, height, width, device=device)
            self.outputs: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        if torch.device(self.device).type != "cuda":
            out = self.net(torch.from_numpy(normalise(left_rgb)), torch.from_numpy(normalise(right_rgb)))
            return StereoResult(out["disparity"][0, 0].float().numpy(), out["confidence"][0, 0].float().numpy())
        with torch.cuda.stream(self.stream):
            self.normaliser.upload(left_rgb, right_rgb)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._forward()
            disparity = self.outputs["disparity"][0, 0].float().cpu()
            confidence = self.outputs["confidence"][0, 0].float().cpu()
        self.frames += 1
        if self.use_cuda_graphs and self.graph is None and self.frames == 1:
            self._capture()
        return StereoResult(disparity.numpy(), confidence.numpy())

    def _forward(self) -> None:
        self.normaliser.normalise_into(0, self.inputs[0])
        self.normaliser.normalise_into(1, self.inputs[1])
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.precision == "fp16"):
            out = self.net(self.inputs[0], self.inputs[1])
        self.outputs = {k: out[k] for k in ("disparity", "confidence")}

    def _capture(self) -> None:
        """Replay the whole forward as one CUDA graph (static input/output tensors)."""
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._forward()
            self.graph = graph
        except RuntimeError:
            self.use_cuda_graphs = False
