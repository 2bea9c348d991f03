"""Backend selection for the node and the tools: `backend: auto|tensorrt|onnxruntime|torch`."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..weights import LoadedModel, describe, load_model
from .base import StereoBackend

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class BackendRequest:
    backend: str = "auto"
    config: str = "fast"
    weights: str = ""  # empty: the shipped weights of `config`
    height: int = 0  # 0: the config's input size
    width: int = 0
    max_disparity: int = 0  # 0: the config's
    engine_path: str = ""
    onnx_path: str = ""  # empty: exported on start-up into a temporary file
    threads: int = 0  # CPU threads (0: library default)


@dataclass
class SelectedBackend:
    backend: StereoBackend
    model: LoadedModel
    reason: str  # why this backend, for the node's log

    def describe(self) -> str:
        b = self.backend
        return (f"backend {b.name} on {b.device}, input {b.width}x{b.height}, max disparity {b.max_disparity} px; "
                f"{describe(self.model)}; {self.reason}")


def create_backend(request: BackendRequest) -> SelectedBackend:
    if request.backend not in BACKENDS:
        raise ValueError(f"backend {request.backend!r} is not one of {BACKENDS}")
    model = load_model(request.config, request.weights or None, request.max_disparity or None)
    height = request.height or model.config.height
    width = request.width or model.config.width
    model.config.check_size(height, width)
    if request.backend == "torch":
        from .torch_backend import TorchBackend
        return SelectedBackend(TorchBackend(model, height, width, threads=request.threads), model, "requested")
    # auto and onnxruntime (TensorRT selection comes with the tensorrt backend).
    from .onnxruntime_backend import OnnxRuntimeBackend
    onnx_path = request.onnx_path
    if not onnx_path:
        from ..tools.export import export_onnx
        onnx_path = str(Path(tempfile.mkdtemp(prefix="stereo_depth_")) / f"{model.config.name}_{width}x{height}.onnx")
        export_onnx(model, onnx_path, height, width)
    reason = "requested" if request.backend == "onnxruntime" else "auto: no TensorRT engine support yet"
    return SelectedBackend(OnnxRuntimeBackend(onnx_path, request.threads), model, reason)
