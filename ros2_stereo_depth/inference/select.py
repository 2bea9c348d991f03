"""Backend selection for the node and the tools: `backend: auto|tensorrt|onnxruntime|torch`.

auto: TensorRT when it is importable, a CUDA GPU is present and a valid engine is at engine_path (or
build_engine_if_missing builds one); else ONNX Runtime (CUDA provider if present, else CPU).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..weights import LoadedModel, describe, load_model
from .base import StereoBackend

if TYPE_CHECKING:
    from .tensorrt_backend import EngineSpec

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class BackendRequest:
    backend: str = "auto"
    config: str = "fast"
    weights: str = ""  # empty: the shipped weights of `config`
    height: int = 0  # 0: the config's input size
    width: int = 0
    max_disparity: int = 0  # 0: the config's
    engine_path: str = ""  # empty: default_engine_path(...)
    onnx_path: str = ""  # empty: exported on start-up into a temporary file
    threads: int = 0  # CPU threads (0: library default)
    precision: str = "fp16"  # engine precision fp32|fp16|int8; torch on CUDA: fp16 autocast unless fp32
    build_engine_if_missing: bool = False  # with TensorRT present: build a missing/stale engine once
    dla_core: int = -1  # -1: GPU only; >= 0: engines built for this DLA core (Jetson)
    cuda_graphs: bool = False  # tensorrt/torch on CUDA: replay a captured CUDA graph after frame 1


@dataclass
class SelectedBackend:
    backend: StereoBackend
    model: LoadedModel
    reason: str  # why this backend, for the node's log

    def describe(self) -> str:
        b = self.backend
        return (f"backend {b.name} on {b.device}, input {b.width}x{b.height}, max disparity {b.max_disparity} px; "
                f"{describe(self.model)}; {self.reason}")


ENGINE_DIR_ENV = "STEREO_DEPTH_ENGINE_DIR"


def default_engine_dir() -> Path:
    """$STEREO_DEPTH_ENGINE_DIR, else $ROS_HOME/stereo_depth/engines (ROS_HOME defaults to ~/.ros): a fixed
    place, because `ros2 launch` starts the node in whatever directory the user happens to be in."""
    explicit = os.environ.get(ENGINE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / "stereo_depth" / "engines"


def default_engine_path(spec: EngineSpec) -> Path:
    dla = f"_dla{spec.dla_core}" if spec.dla_core is not None else ""
    name = f"{spec.config}_{spec.width}x{spec.height}_d{spec.max_disparity}_{spec.precision}{dla}.engine"
    return default_engine_dir() / name


def create_backend(request: BackendRequest) -> SelectedBackend:
    if request.backend not in BACKENDS:
        raise ValueError(f"backend {request.backend!r} is not one of {BACKENDS}")
    model = load_model(request.config, request.weights or None, request.max_disparity or None)
    height = request.height or model.config.height
    width = request.width or model.config.width
    model.config.check_size(height, width)
    if request.backend == "torch":
        from .torch_backend import TorchBackend
        precision = "fp32" if request.precision == "fp32" else "fp16"
        backend = TorchBackend(model, height, width, threads=request.threads, precision=precision,
                               cuda_graphs=request.cuda_graphs)
        return SelectedBackend(backend, model, "requested")
    reason = "requested"
    if request.backend in ("auto", "tensorrt"):
        selected, why_not = _try_tensorrt(request, model, height, width)
        if selected is not None:
            return selected
        if request.backend == "tensorrt":
            raise RuntimeError(f"backend tensorrt is not possible: {why_not}")
        reason = "auto: TensorRT not used: " + " ".join(why_not.split())  # one line, command included
    from .onnxruntime_backend import OnnxRuntimeBackend
    onnx_path = request.onnx_path
    if not onnx_path:
        from ..tools.export import export_onnx
        onnx_path = str(Path(tempfile.mkdtemp(prefix="stereo_depth_")) / f"{model.config.name}_{width}x{height}.onnx")
        export_onnx(model, onnx_path, height, width)
    return SelectedBackend(OnnxRuntimeBackend(onnx_path, request.threads), model, reason)


def _try_tensorrt(request: BackendRequest, model: LoadedModel, height: int,
                  width: int) -> tuple[SelectedBackend | None, str]:
    """The TensorRT backend, or None and why not (ending with the command that would fix it)."""
    from .tensorrt_backend import (EngineSpec, TensorRTBackend, current_platform, engine_problems, rebuild_command,
                                   tensorrt_unavailable_reason)

    dla_core = request.dla_core if request.dla_core >= 0 else None
    precision = request.precision
    spec = EngineSpec(config=model.config.name, height=height, width=width, max_disparity=model.config.max_disparity,
                      precision=precision, weights=request.weights, weights_sha256=model.weights_sha256,
                      dla_core=dla_core)
    engine_path = Path(request.engine_path) if request.engine_path else default_engine_path(spec)
    command = rebuild_command(spec, engine_path)
    unavailable = tensorrt_unavailable_reason()
    if unavailable is not None:
        return None, f"{unavailable}; on a machine with TensorRT build the engine with:\n  {command}"
    problems = engine_problems(engine_path, spec, current_platform())
    built = ""
    if problems:
        if not request.build_engine_if_missing:
            return None, f"{'; '.join(problems)}; build it with:\n  {command}"
        from ..tools.build_engine import build
        build(model, spec, engine_path)  # once: the next start finds it valid and cached
        built = f", built now ({'; '.join(problems)})"
    backend = TensorRTBackend(engine_path, spec, command, cuda_graphs=request.cuda_graphs)
    how = "requested" if request.backend == "tensorrt" else "auto: TensorRT engine valid"
    return SelectedBackend(backend, model, f"{how}: {engine_path}{built}"), ""
