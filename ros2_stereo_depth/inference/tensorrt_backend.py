"""The `tensorrt` runtime backend: runs a serialized engine built by artifacts/engine_build.py.

Tensor-name I/O, buffers allocated once, the shared CudaRunner (uint8 upload and normalisation on the
GPU, optional CUDA-graph replay). The engine's file and sidecar are checked before TensorRT touches it;
deserialisation and the execution context are created on the configured device.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..artifacts.engine_spec import EngineSpec, engine_problems
from ..artifacts.sidecar import SidecarError, read_sidecar
from ..artifacts.tensorrt_env import (EngineMismatchError, TensorRTError, current_platform, deserialize_engine,
                                      dims_tuple, tensorrt_unavailable_reason)
from ..config import INPUT_NAMES, OUTPUT_NAMES
from .base import StereoResult
from .cuda_runner import CudaRunner

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from ..artifacts.tensorrt_env import trt


def _torch_dtype(dtype: trt.DataType) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise TensorRTError(f"engine I/O dtype {dtype.name} is not supported (float32/float16 expected)")
    return table[dtype]


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, engine_path: str | Path, expected: EngineSpec | None = None, command: str = "",
                 cuda_graphs: bool = False, device: int = 0) -> None:
        path = Path(engine_path)
        try:
            meta = read_sidecar(path, "engine") or {}
        except SidecarError:
            meta = {}  # engine_problems below names the problem
        command = command or str(meta.get("rebuild_command", "stereo-depth build-engine ... (see --help)"))
        # File checks first, before TensorRT is touched: a tampered engine is refused everywhere.
        problems = engine_problems(path, expected)
        if problems:
            raise EngineMismatchError("; ".join(problems), command)
        reason = tensorrt_unavailable_reason()
        if reason is not None:
            raise TensorRTError(f"the tensorrt backend cannot run: {reason}")
        problems = engine_problems(path, expected, current_platform(device))
        if problems:
            raise EngineMismatchError("; ".join(problems) + " (rebuild on this machine)", command)
        self.meta = meta
        self.device = f"cuda:{device}"
        torch_device = torch.device("cuda", device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        dla_core = meta.get("dla_core")
        with torch.cuda.device(torch_device):
            try:
                self.runtime, self.engine = deserialize_engine(self.logger, path.read_bytes(),
                                                               None if dla_core is None else int(dla_core), str(path))
            except EngineMismatchError as error:
                raise EngineMismatchError(error.cause + " (rebuild on this machine)", command) from None
            context = self.engine.create_execution_context()
            if context is None:  # out of device memory, or an engine this runtime cannot run
                raise TensorRTError(f"TensorRT could not create an execution context for {path}")
            self.context = context
            self.buffers = self._bind(path, torch_device)
        _, _, self.height, self.width = self.buffers[INPUT_NAMES[0]].shape
        self.max_disparity = int(meta.get("max_disparity", 0))
        self.runner = CudaRunner(self.height, self.width, torch_device,
                                 {n: self.buffers[n] for n in INPUT_NAMES}, self._execute, cuda_graphs)

    def _bind(self, path: Path, device: torch.device) -> dict[str, torch.Tensor]:
        """One device buffer per I/O tensor, its address given to the context once (buffers are reused)."""
        engine = self.engine
        buffers: dict[str, torch.Tensor] = {}
        inputs = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = dims_tuple(engine.get_tensor_shape(name))
            if any(d <= 0 for d in shape):
                raise EngineMismatchError(f"{path}: tensor {name} has a dynamic shape {shape}; engines must be static")
            buffers[name] = torch.empty(shape, dtype=_torch_dtype(engine.get_tensor_dtype(name)), device=device)
            if not self.context.set_tensor_address(name, buffers[name].data_ptr()):
                raise TensorRTError(f"{path}: TensorRT refused the address of tensor {name}")
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(name)
        if sorted(inputs) != sorted(INPUT_NAMES) or sorted(set(buffers) - set(inputs)) != sorted(OUTPUT_NAMES):
            raise EngineMismatchError(f"{path}: I/O tensors {sorted(buffers)}, expected {', '.join(INPUT_NAMES)} -> "
                                      f"{', '.join(OUTPUT_NAMES)}")
        return buffers

    def _execute(self) -> dict[str, torch.Tensor]:
        if not self.context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise TensorRTError("TensorRT execute_async_v3 failed")
        return {name: self.buffers[name] for name in OUTPUT_NAMES}

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        return self.runner.run(left_rgb, right_rgb)
