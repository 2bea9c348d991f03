"""ONNX Runtime backend: runs an exported model (CUDA provider when present, else CPU)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..artifacts.sidecar import read_sidecar
from ..config import INPUT_NAMES, OUTPUT_NAMES
from ..normalisation import normalise
from .base import StereoResult


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, threads: int = 0) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ONNX model not found")
        self.meta = read_sidecar(path, "onnx") or {}
        options = ort.SessionOptions()
        # Measured with `stereo-depth bench --ort-study` (BENCHMARKS.md, fast at 640x480 and 320x256, one
        # interleaved run): all graph optimisations (the default; basic/extended/none cost 1.3-1.7x);
        # sequential execution (parallel inter-op: 1.4-1.7x); the CPU arena kept (off: slower for 13 MiB);
        # the memory pattern off (it plans one block for all of a run's intermediates): 50 MiB less peak RSS
        # for `fast` at 640x480 (224 -> 174 MiB in a fresh process) at the same speed (209-211 against
        # 207-212 ms, interleaved); intra-op threads that do not spin while waiting: 0.68-1.0x ORT's default
        # latency in every run, because spinning workers take the cores that DDS, the node's callbacks and
        # other processes need on a small shared CPU. The thread count stays the `threads` parameter: on the
        # loaded 2-vCPU machine 1 thread was fastest (0.68-0.70x), which would not hold on a robot computer
        # with free cores.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        shape = self.session.get_inputs()[0].shape
        self.height, self.width = int(shape[2]), int(shape[3])
        self.max_disparity = int(self.meta.get("max_disparity", 0))

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        disparity, confidence = self.session.run(
            list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (normalise(left_rgb), normalise(right_rgb)))))
        return StereoResult(disparity[0, 0], confidence[0, 0])
