"""The TensorRT module, whether it can be used here, the running platform, and our TensorRT errors.

Supports TensorRT 10.x and 11.x. Capabilities are detected with hasattr where the API shows them
(11.x removed the FP16/INT8 builder flags); the strongly typed default follows the version, because
10.12 deprecated weak typing without removing anything. Device memory and CUDA streams come from
PyTorch (a dependency anyway), so no cuda-python / pycuda is needed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorrt as trt
else:
    try:
        import tensorrt as trt
    except ImportError:
        trt = None

# Weakly typed networks (builder precision flags, layer precision constraints) are deprecated from here.
STRONGLY_TYPED_DEFAULT_FROM = (10, 12)


class TensorRTError(RuntimeError):
    """TensorRT cannot be used; the message says why (`cause`) and what to run (`command`)."""

    def __init__(self, cause: str, command: str = "") -> None:
        self.cause = cause
        self.command = command
        super().__init__(cause + (f". Rebuild it with:\n  {command}" if command else ""))


class EngineMismatchError(TensorRTError):
    """The engine file is missing, modified, or was built for something else."""


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA GPU are usable, else why not."""
    if trt is None:
        return "the tensorrt Python package is not installed"
    if not hasattr(trt, "Builder"):
        # tensorrt-stubs alone makes `import tensorrt` succeed as an empty namespace package.
        return "only type stubs of tensorrt are installed (no TensorRT runtime)"
    import torch  # only once TensorRT is there: a CPU-only node never imports torch for this check

    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to PyTorch (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    return None


def tensorrt_version() -> str:
    return str(trt.__version__) if trt is not None and hasattr(trt, "__version__") else "unavailable"


def version_tuple(version: str) -> tuple[int, ...]:
    """"10.13.0.35" -> (10, 13, 0, 35); leading numeric parts only."""
    parts = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def strongly_typed_only() -> bool:
    """TensorRT 11 removed the FP16/INT8 builder flags: networks are strongly typed."""
    return not hasattr(trt.BuilderFlag, "FP16")


def default_strongly_typed(version: str, precision: str) -> bool:
    """Strongly typed unless weak typing is still the way (before 10.12), or INT8 calibration needs it
    (10.x: calibration works on weakly typed networks only)."""
    if precision == "int8":
        return False
    return version_tuple(version)[:2] >= STRONGLY_TYPED_DEFAULT_FROM


@dataclass(frozen=True)
class PlatformInfo:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    cuda_version: str  # the CUDA of the PyTorch build that provides streams and buffers


def current_platform(device: int = 0) -> PlatformInfo:
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return PlatformInfo(tensorrt_version(), torch.cuda.get_device_name(device), f"{major}.{minor}",
                        str(torch.version.cuda))


def deserialize_engine(logger: trt.ILogger, engine_bytes: bytes, dla_core: int | None,
                       where: str) -> tuple[trt.Runtime, trt.ICudaEngine]:
    """Runtime + engine. A DLA engine needs runtime.DLA_core set before deserialising (as trtexec does);
    the caller makes the engine's CUDA device current."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        if dla_core < 0 or dla_core >= runtime.num_DLA_cores:
            raise EngineMismatchError(f"{where}: built for DLA core {dla_core}, this device has "
                                      f"{runtime.num_DLA_cores} DLA cores")
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise EngineMismatchError(f"TensorRT {tensorrt_version()} could not deserialize {where}")
    return runtime, engine


def dims_tuple(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))  # Dims has no __iter__ in the bindings
