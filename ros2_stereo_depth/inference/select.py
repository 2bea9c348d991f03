"""Backend selection for the node and the tools: `backend: auto|tensorrt|onnxruntime|torch`.

auto: TensorRT when it is importable, a CUDA GPU is present and a valid engine is at engine_path (or
build_engine_if_missing builds one); else ONNX Runtime (CUDA provider if present, else CPU). Whatever
stops TensorRT (no TensorRT, a stale or foreign engine, a failed build, an unreadable sidecar) becomes
one line naming the cause and the build command: auto logs it and falls back, tensorrt raises it.

The network (and torch) is built only when something needs it: the torch backend, an ONNX export, an
engine build. A CPU node on a cached ONNX graph runs without importing torch.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import engine_spec, tensorrt_env
from ..artifacts.cache import cached_onnx
from ..artifacts.sidecar import SidecarError
from ..artifacts.weights import WeightsInfo, build_model, describe, resolve_weights
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
    engine_path: str = ""  # empty: default_engine_path(...)
    onnx_path: str = ""  # empty: the cached export under $ROS_HOME/stereo_depth/onnx
    threads: int = 0  # CPU threads (0: library default)
    precision: str = "fp16"  # engine precision fp32|fp16|int8; torch on CUDA: fp16 autocast unless fp32
    build_engine_if_missing: bool = False  # with TensorRT present: build a missing/stale engine once
    dla_core: int = -1  # -1: GPU only; >= 0: engines built for this DLA core (Jetson)
    cuda_graphs: bool = False  # tensorrt/torch on CUDA: replay a captured CUDA graph after frame 1


@dataclass
class SelectedBackend:
    backend: StereoBackend
    weights: WeightsInfo  # a LoadedModel (with the network) when the backend needed one
    reason: str  # why this backend, for the node's log

    def describe(self) -> str:
        b = self.backend
        return (f"backend {b.name} on {b.device}, input {b.width}x{b.height}, max disparity {b.max_disparity} px; "
                f"{describe(self.weights)}; {self.reason}")


# What stops TensorRT and is a reason to fall back (auto) or to fail with the build command (tensorrt).
TENSORRT_FAILURES = (tensorrt_env.TensorRTError, SidecarError, ValueError, OSError)


def create_backend(request: BackendRequest) -> SelectedBackend:
    if request.backend not in BACKENDS:
        raise ValueError(f"backend {request.backend!r} is not one of {BACKENDS}")
    if request.dla_core < -1:
        raise ValueError(f"dla_core must be -1 (GPU only) or a DLA core >= 0, not {request.dla_core}")
    weights = resolve_weights(request.config, request.weights or None, request.max_disparity or None,
                              height=request.height or None, width=request.width or None)
    height, width = weights.config.height, weights.config.width  # the request's, else the config's; checked
    if request.backend == "torch":
        from .torch_backend import TorchBackend
        precision = "fp32" if request.precision == "fp32" else "fp16"  # int8 is for engines only
        model = build_model(weights)
        backend = TorchBackend(model, height, width, precision=precision, cuda_graphs=request.cuda_graphs,
                               threads=request.threads)
        return SelectedBackend(backend, model, "requested")
    reason = "requested"
    if request.backend in ("auto", "tensorrt"):
        selected, why_not = _try_tensorrt(request, weights, height, width)
        if selected is not None:
            return selected
        if request.backend == "tensorrt":
            raise tensorrt_env.TensorRTError(f"backend tensorrt is not possible: {why_not}")
        reason = f"auto: TensorRT not used: {why_not}"
    return SelectedBackend(_onnxruntime(request, weights, height, width), weights, reason)


def _onnxruntime(request: BackendRequest, weights: WeightsInfo, height: int, width: int) -> StereoBackend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    if request.onnx_path:
        return OnnxRuntimeBackend(request.onnx_path, request.threads)
    if weights.weights_sha256 is not None:
        path, _ = cached_onnx(weights, height, width)  # exports (with torch) only when not cached
        return OnnxRuntimeBackend(path, request.threads)
    # Random weights differ in every process: nothing to cache; the session keeps the graph in memory.
    from ..artifacts.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="stereo_depth_") as tmp:
        path = export_onnx(build_model(weights), Path(tmp) / f"{weights.config.name}_{width}x{height}.onnx",
                           height, width)
        return OnnxRuntimeBackend(path, request.threads)


def _try_tensorrt(request: BackendRequest, weights: WeightsInfo, height: int,
                  width: int) -> tuple[SelectedBackend | None, str]:
    """The TensorRT backend, or None and one line saying why not, ending with the build command."""
    spec = engine_spec.EngineSpec(config=weights.config.name, height=height, width=width,
                                  max_disparity=weights.config.max_disparity, precision=request.precision,
                                  weights=request.weights, weights_sha256=weights.weights_sha256,
                                  dla_core=request.dla_core if request.dla_core >= 0 else None)
    engine_path = Path(request.engine_path) if request.engine_path else engine_spec.default_engine_path(spec)
    command = engine_spec.rebuild_command(spec, engine_path)
    unavailable = tensorrt_env.tensorrt_unavailable_reason()
    if unavailable is not None:
        return None, engine_spec.one_line(unavailable, command)
    from ..artifacts import engine_build  # torch and onnx: only where TensorRT can run
    from .tensorrt_backend import TensorRTBackend

    try:
        problems = engine_spec.engine_problems(engine_path, spec, tensorrt_env.current_platform())
        built = ""
        if problems:
            if not request.build_engine_if_missing:
                return None, engine_spec.one_line("; ".join(problems), command)
            engine_build.build(build_model(weights), spec, engine_path)  # once: the next start finds it valid and cached
            built = f", built now ({'; '.join(problems)})"
        backend = TensorRTBackend(engine_path, spec, command, cuda_graphs=request.cuda_graphs)
    except TENSORRT_FAILURES as error:
        cause = error.cause if isinstance(error, tensorrt_env.TensorRTError) else str(error)
        return None, engine_spec.one_line(f"{type(error).__name__}: {cause}", command)
    how = "requested" if request.backend == "tensorrt" else "auto: TensorRT engine valid"
    return SelectedBackend(backend, weights, f"{how}: {engine_path}{built}"), ""
