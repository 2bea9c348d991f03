"""The CUDA run loop shared by the torch and TensorRT backends: normalise on the GPU, run, and after the
first frame capture the whole step as a CUDA graph and replay it. A failed capture is logged once, then
the runner keeps running the plain step."""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..config import INPUT_NAMES, OUTPUT_NAMES
from ..normalisation import MEAN_RGB, STD_RGB
from .base import StereoResult

LOG = logging.getLogger(__name__)


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


# Runs the network on the two normalised input tensors (static buffers) and returns the output tensors,
# enqueued on the current stream. Captured into a CUDA graph after the first frame: no host syncs inside.
Forward = Callable[[], dict[str, torch.Tensor]]


class CudaRunner:
    def __init__(self, height: int, width: int, device: torch.device, inputs: dict[str, torch.Tensor],
                 forward: Forward, cuda_graphs: bool) -> None:
        if sorted(inputs) != sorted(INPUT_NAMES):
            raise ValueError(f"inputs {sorted(inputs)}, expected {list(INPUT_NAMES)}")
        self.device = device
        self.inputs = inputs
        self.forward = forward
        self.use_cuda_graphs = cuda_graphs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: dict[str, torch.Tensor] = {}
        self.frames = 0
        self.notes: list[str] = []
        with torch.cuda.device(device):
            self.normaliser = GpuNormaliser(height, width, device)
            self.host_out = {n: torch.empty(1, 1, height, width, dtype=torch.float32).pin_memory()
                             for n in OUTPUT_NAMES}
            # Non-default stream: TensorRT warns on the legacy stream, and graphs cannot be captured on it.
            self.stream = torch.cuda.Stream(device)
            # The normaliser's constants were written on the default stream: order them before our work.
            self.stream.wait_stream(torch.cuda.current_stream(device))

    def _step(self) -> dict[str, torch.Tensor]:
        for index, name in enumerate(INPUT_NAMES):
            self.normaliser.normalise_into(index, self.inputs[name])
        return self.forward()

    def run(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self.normaliser.upload(left_rgb, right_rgb)
            if self.graph is not None:
                self.graph.replay()
            else:
                self.outputs = self._step()
            for name, host in self.host_out.items():
                host.copy_(self.outputs[name].view(host.shape), non_blocking=True)
        self.stream.synchronize()
        self.frames += 1
        if self.use_cuda_graphs and self.graph is None and self.frames == 1:
            self._capture()  # after the first frame: lazy allocations (cuDNN, TensorRT) are done
        return StereoResult(self.host_out["disparity"][0, 0].numpy().copy(),
                            self.host_out["confidence"][0, 0].numpy().copy())

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            # thread_local: other threads of the node (ROS callbacks) may use CUDA while we capture.
            with torch.cuda.device(self.device), torch.cuda.graph(graph, stream=self.stream,
                                                                  capture_error_mode="thread_local"):
                outputs = self._step()
        except RuntimeError as error:  # e.g. a TensorRT tactic or cuDNN kernel that is not capturable
            self.use_cuda_graphs = False
            del graph
            # Whatever the capture left half-enqueued is discarded with a fresh stream; plain runs follow.
            torch.cuda.synchronize(self.device)
            self.stream = torch.cuda.Stream(self.device)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            self.notes.append(f"CUDA graph capture failed, running without: {error}")
            LOG.warning(self.notes[-1])
            return
        self.graph = graph
        self.outputs = outputs
        self.notes.append("CUDA graph captured")
