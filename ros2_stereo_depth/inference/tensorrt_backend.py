"""All TensorRT API code: engine building (used by `stereo-depth build-engine`), the engine sidecar
and its checks, and the `tensorrt` runtime backend.

Supports TensorRT 10.x (weakly typed networks: BuilderFlag.FP16 / INT8 with an entropy calibrator)
and 11.x (strongly typed only: precision comes from the ONNX graph, see tools/export.py). Capabilities
are detected with hasattr, never by enum integers or version numbers. Device memory and the CUDA
stream come from PyTorch (a dependency anyway), so no cuda-python / pycuda is needed.
"""
from __future__ import annotations

import datetime
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..weights import sha256_file
from .base import StereoResult
from .torch_backend import GpuNormaliser

if TYPE_CHECKING:
    import tensorrt as trt
else:
    try:
        import tensorrt as trt
    except ImportError:
        trt = None

SIDECAR_VERSION = 1
PRECISIONS = ("fp32", "fp16", "int8")
# ONNX node-name prefix of the soft-argmin regression (model/regression.py). In fp16/int8 builds it and
# every layer after it (refinement, upsampling) stay fp32, like the fp16 ONNX graph (tools/export.py):
# an fp16 softmax over D/4 bins and fp16 disparities (1/8 px step above 128 px) lose the sub-pixel part.
FP32_FROM_PREFIX = "/net/regression/"


class TensorRTError(RuntimeError):
    """TensorRT cannot be used; the message says why and what to run."""


class EngineMismatchError(TensorRTError):
    """The engine file is missing, modified, or was built for something else."""


# ----------------------------------------------------------------------------------------------
# Availability and the running platform


def tensorrt_unavailable_reason() -> str | None:
    """None when TensorRT and a CUDA GPU are usable, else why not."""
    if trt is None:
        return "the tensorrt Python package is not installed"
    if not hasattr(trt, "Builder"):
        # tensorrt-stubs alone makes `import tensorrt` succeed as an empty namespace package.
        return "only type stubs of tensorrt are installed (no TensorRT runtime)"
    if not torch.cuda.is_available():
        return f"no CUDA GPU is visible to PyTorch (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    return None


def tensorrt_version() -> str:
    return str(trt.__version__) if trt is not None and hasattr(trt, "__version__") else "unavailable"


def strongly_typed_only() -> bool:
    """TensorRT 11 removed the FP16/INT8 builder flags: networks are strongly typed."""
    return not hasattr(trt.BuilderFlag, "FP16")


@dataclass(frozen=True)
class PlatformInfo:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    cuda_version: str  # the CUDA of the PyTorch build that provides streams and buffers


def current_platform(device: int = 0) -> PlatformInfo:
    major, minor = torch.cuda.get_device_capability(device)
    return PlatformInfo(tensorrt_version(), torch.cuda.get_device_name(device), f"{major}.{minor}",
                        str(torch.version.cuda))


# ----------------------------------------------------------------------------------------------
# Commands


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from; also what a caller expects an engine at engine_path to be."""
    config: str
    height: int
    width: int
    max_disparity: int
    precision: str = "fp16"
    weights: str = ""  # empty: the shipped weights of `config`
    weights_sha256: str | None = None
    dla_core: int | None = None
    workspace_mib: int = 4096
    timing_cache: str = ""


def rebuild_command(spec: EngineSpec, engine_path: str | Path) -> str:
    """The exact `stereo-depth build-engine` command that (re)builds `engine_path`."""
    args = ["stereo-depth", "build-engine", "--config", spec.config]
    if spec.weights:
        args += ["--weights", spec.weights]
    args += ["--height", str(spec.height), "--width", str(spec.width), "--max-disparity", str(spec.max_disparity),
             "--precision", spec.precision]
    if spec.dla_core is not None:
        args += ["--dla-core", str(spec.dla_core)]
    if spec.timing_cache:
        args += ["--timing-cache", spec.timing_cache]
    return shlex.join(args + ["--output", str(engine_path)])


def fp32_layer_names(names_in_topological_order: Sequence[str]) -> list[str]:
    """The regression's nodes/layers and all after them: kept fp32 in weakly typed fp16/int8 builds."""
    # Constants are hoisted to the front of the graph by the simplifier: not where the regression starts.
    start = next((i for i, n in enumerate(names_in_topological_order)
                  if n.startswith(FP32_FROM_PREFIX) and not n.rsplit("/", 1)[-1].startswith("Constant")), None)
    if start is None:
        raise TensorRTError(f"no layer named {FP32_FROM_PREFIX}*: cannot keep the regression in fp32")
    return [n for n in names_in_topological_order[start:] if n]


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, spec: EngineSpec, strongly_typed: bool,
                    fp32_layers: Sequence[str] = ()) -> str:
    """The trtexec line equivalent to our build (for checking or building on a target by hand)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--memPoolSize=workspace:{spec.workspace_mib}M"]
    if strongly_typed:
        args.append("--stronglyTyped")  # precision is in the (fp16) ONNX graph
    elif spec.precision in ("fp16", "int8"):
        args.append("--fp16")
        if spec.precision == "int8":
            args += ["--int8", f"--calib={Path(engine_path).with_suffix('.calib')}"]
        if fp32_layers:
            args += ["--precisionConstraints=prefer",
                     "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in fp32_layers),
                     "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in fp32_layers)]
    if spec.dla_core is not None:
        args += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.timing_cache:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    return shlex.join(args)


# ----------------------------------------------------------------------------------------------
# Sidecar and checks (no TensorRT needed: testable anywhere)


def sidecar_path(engine_path: str | Path) -> Path:
    return Path(engine_path).with_suffix(".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any] | None:
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def engine_problems(engine_path: str | Path, expected: EngineSpec | None = None,
                    platform: PlatformInfo | None = None) -> list[str]:
    """Why the engine at `engine_path` must not be used (empty: it is usable). File integrity always;
    the request (`expected`) and the running TensorRT/GPU (`platform`) when given."""
    path = Path(engine_path)
    if not path.is_file():
        return [f"engine {path} not found"]
    meta = read_sidecar(path)
    if meta is None:
        return [f"engine {path} has no sidecar {sidecar_path(path)} (refusing an engine of unknown origin)"]
    problems = []
    digest = sha256_file(path)
    if digest != meta.get("engine_sha256"):
        problems.append(f"engine {path} sha256 {digest[:12]} does not match its sidecar "
                        f"({str(meta.get('engine_sha256'))[:12]}): modified or foreign file, refused")
    if platform is not None:
        if meta.get("tensorrt_version") != platform.tensorrt_version:
            problems.append(f"engine built with TensorRT {meta.get('tensorrt_version')}, running "
                            f"{platform.tensorrt_version}")
        if meta.get("compute_capability") != platform.compute_capability:
            problems.append(f"engine built for compute capability {meta.get('compute_capability')} "
                            f"({meta.get('gpu_name')}), this GPU is {platform.compute_capability} ({platform.gpu_name})")
    if expected is not None:
        wanted: dict[str, object] = {"config": expected.config, "input_height": expected.height,
                                     "input_width": expected.width, "max_disparity": expected.max_disparity,
                                     "precision": expected.precision, "weights_sha256": expected.weights_sha256}
        if expected.dla_core is not None:
            wanted["dla_core"] = expected.dla_core
        for key, value in wanted.items():
            if meta.get(key) != value:
                problems.append(f"engine has {key}={meta.get(key)!r}, wanted {value!r}")
    return problems


# ----------------------------------------------------------------------------------------------
# Building


@dataclass
class BuildResult:
    engine_path: Path
    sidecar: dict[str, Any]
    dla_fallback_layers: list[str] = field(default_factory=list)


def _parser_errors(parser: trt.OnnxParser) -> str:
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        # node_name/node_operator exist from TensorRT 10.0; older parsers only give the node index.
        name = error.node_name() if hasattr(error, "node_name") else f"#{error.node()}"
        operator = error.node_operator() if hasattr(error, "node_operator") else "?"
        lines.append(f"node {name} ({operator}): {error.desc()} [{error.code()}]")
    return "TensorRT's ONNX parser rejected the graph:\n  " + "\n  ".join(lines)


def _pin_fp32(network: trt.INetworkDefinition) -> int:
    """Weakly typed fp16/int8 builds: keep regression, refinement and upsampling in fp32."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]  # parser order: topological
    keep = set(fp32_layer_names([layer.name for layer in layers]))
    pinned = 0
    for layer in layers:
        if layer.name not in keep:
            continue
        layer.precision = trt.DataType.FLOAT
        for j in range(layer.num_outputs):
            if layer.get_output_type(j) in (trt.DataType.FLOAT, trt.DataType.HALF):
                layer.set_output_type(j, trt.DataType.FLOAT)
        pinned += 1
    return pinned


def _make_calibrator(height: int, width: int, max_disparity: int, samples: int, cache: Path,
                     device: torch.device) -> trt.IInt8EntropyCalibrator2:
    """Entropy calibration (TensorRT 10.x INT8) on our synthetic stereo scenes, not on the Aloe
    pair: that is the real-data test set."""
    from ..data.synthetic import SceneParams, SyntheticStereo

    data = SyntheticStereo(SceneParams(height=height, width=width, max_disparity_px=0.8 * max_disparity),
                           seed=20240611)
    normaliser = GpuNormaliser(height, width, device)

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index = 0
            self.buffers = {"left": torch.empty(1, 3, height, width, device=device),
                            "right": torch.empty(1, 3, height, width, device=device)}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int]:
            if self.index >= samples:
                return []  # TensorRT's "no more batches"
            sample = data[self.index]
            self.index += 1
            normaliser.write(sample.left, self.buffers["left"])
            normaliser.write(sample.right, self.buffers["right"])
            torch.cuda.synchronize(device)
            return [self.buffers[name].data_ptr() for name in names]

        def read_calibration_cache(self) -> bytes:
            return cache.read_bytes() if cache.is_file() else b""

        def write_calibration_cache(self, blob: Any) -> None:
            cache.write_bytes(bytes(blob))

    return Calibrator()


def build_engine(onnx_path: str | Path, engine_path: str | Path, spec: EngineSpec, onnx_meta: dict[str, Any],
                 strongly_typed: bool, log: Callable[[str], None] = print,
                 calibration_samples: int = 64) -> BuildResult:
    """Parse `onnx_path`, build, write the engine and its sidecar. Raises TensorRTError."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise TensorRTError(f"cannot build a TensorRT engine: {reason}")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda", 0)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise TensorRTError(_parser_errors(parser))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_mib << 20)
    flag_names: list[str] = ["STRONGLY_TYPED"] if strongly_typed else []
    pinned = 0
    if not strongly_typed and spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        flag_names.append("FP16")
        if spec.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            flag_names.append("INT8")
            config.int8_calibrator = _make_calibrator(spec.height, spec.width, spec.max_disparity,
                                                      calibration_samples, engine_path.with_suffix(".calib"), device)
        pinned = _pin_fp32(network)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        flag_names.append("PREFER_PRECISION_CONSTRAINTS")
    fallback: list[str] = []
    if spec.dla_core is not None:
        if builder.num_DLA_cores <= spec.dla_core:
            raise TensorRTError(f"--dla-core {spec.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        flag_names += [f"DLA_CORE={spec.dla_core}", "GPU_FALLBACK"]
        # 3D convolutions, MatMul on activations and the softmax cannot run on DLA: they fall back.
        fallback = [f"{layer.name} ({layer.type.name})" for layer in
                    (network.get_layer(i) for i in range(network.num_layers)) if not config.can_run_on_DLA(layer)]
        log(f"DLA core {spec.dla_core}: {network.num_layers - len(fallback)} of {network.num_layers} layers can run "
            f"on DLA; {len(fallback)} fall back to the GPU")
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer info for the inspector
    cache_path = Path(spec.timing_cache) if spec.timing_cache else None
    if cache_path is not None:
        timing_cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
        config.set_timing_cache(timing_cache, False)
    log(f"building {engine_path} with TensorRT {tensorrt_version()} ({', '.join(flag_names) or 'fp32'}"
        f"{f', {pinned} layers pinned to fp32' if pinned else ''}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError("TensorRT failed to build the engine (see its log above)")
    engine_bytes = bytes(memoryview(serialized))
    engine_path.write_bytes(engine_bytes)
    if cache_path is not None:
        cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise TensorRTError(f"TensorRT could not load the engine it just built ({engine_path})")
    inspector = engine.create_engine_inspector()
    engine_path.with_suffix(".layers.json").write_text(
        inspector.get_engine_information(trt.LayerInformationFormat.JSON) + "\n")
    platform = current_platform()
    sidecar: dict[str, Any] = {
        "sidecar_version": SIDECAR_VERSION,
        "tensorrt_version": platform.tensorrt_version,
        "gpu_name": platform.gpu_name,
        "compute_capability": platform.compute_capability,
        "cuda_version": platform.cuda_version,
        "precision": spec.precision,
        "strongly_typed": strongly_typed,
        "dla_core": spec.dla_core,
        "dla_fallback_layers": fallback,
        "build_flags": flag_names,
        "workspace_mib": spec.workspace_mib,
        "io": engine_io(engine),
        "config": spec.config,
        "input_height": spec.height,
        "input_width": spec.width,
        "max_disparity": spec.max_disparity,
        "normalisation": onnx_meta.get("normalisation"),
        "onnx_precision": onnx_meta.get("precision"),
        "onnx_sha256": sha256_file(onnx_path),
        "weights": onnx_meta.get("weights"),
        "weights_sha256": spec.weights_sha256,
        "engine_sha256": sha256_file(engine_path),
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rebuild_command": rebuild_command(spec, engine_path),
    }
    sidecar_path(engine_path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return BuildResult(engine_path, sidecar, fallback)


def engine_io(engine: trt.ICudaEngine) -> list[dict[str, Any]]:
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io.append({"name": name, "mode": engine.get_tensor_mode(name).name,
                   "shape": list(_shape(engine.get_tensor_shape(name))),
                   "dtype": engine.get_tensor_dtype(name).name})
    return io


# ----------------------------------------------------------------------------------------------
# Runtime backend


def _shape(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))  # Dims has no __iter__ in the bindings


def _torch_dtype(dtype: trt.DataType) -> torch.dtype:
    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise TensorRTError(f"engine I/O dtype {dtype.name} is not supported (float32/float16 expected)")
    return table[dtype]


class TensorRTBackend:
    """Runs a serialized engine: tensor-name I/O, buffers allocated once, a private CUDA stream,
    uint8 upload with normalisation on the GPU, optional CUDA-graph replay after the first frame."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, expected: EngineSpec | None = None, command: str = "",
                 cuda_graphs: bool = False, device: int = 0) -> None:
        path = Path(engine_path)
        meta = read_sidecar(path) or {}
        command = command or str(meta.get("rebuild_command", "stereo-depth build-engine ... (see --help)"))
        # File checks first, before TensorRT is touched: a tampered engine is refused everywhere.
        problems = engine_problems(path, expected)
        if problems:
            raise EngineMismatchError("; ".join(problems) + f". Rebuild it with:\n  {command}")
        reason = tensorrt_unavailable_reason()
        if reason is not None:
            raise TensorRTError(f"the tensorrt backend cannot run: {reason}")
        problems = engine_problems(path, expected, current_platform(device))
        if problems:
            raise EngineMismatchError("; ".join(problems) + f". Rebuild it on this machine with:\n  {command}")
        self.meta = meta
        self.device = f"cuda:{device}"
        self._torch_device = torch.device("cuda", device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineMismatchError(f"TensorRT {tensorrt_version()} could not deserialize {path}. "
                                      f"Rebuild it on this machine with:\n  {command}")
        self.engine = engine
        self.context = engine.create_execution_context()
        self.buffers: dict[str, torch.Tensor] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = _shape(engine.get_tensor_shape(name))
            if any(d <= 0 for d in shape):
                raise EngineMismatchError(f"{path}: tensor {name} has a dynamic shape {shape}; engines must be static")
            buffer = torch.empty(shape, dtype=_torch_dtype(engine.get_tensor_dtype(name)), device=self._torch_device)
            self.buffers[name] = buffer
            self.context.set_tensor_address(name, buffer.data_ptr())  # once: buffers are reused
        inputs = [n for n in self.buffers if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if sorted(inputs) != ["left", "right"] or sorted(set(self.buffers) - set(inputs)) != ["confidence", "disparity"]:
            raise EngineMismatchError(f"{path}: I/O tensors {sorted(self.buffers)}, expected left, right -> "
                                      f"disparity, confidence")
        _, _, self.height, self.width = self.buffers["left"].shape
        self.max_disparity = int(meta.get("max_disparity", 0))
        self.stream = torch.cuda.Stream(self._torch_device)  # non-default: TensorRT warns on the legacy stream
        self.normaliser = GpuNormaliser(self.height, self.width, self._torch_device)
        self.host_out = {n: torch.empty(self.buffers[n].shape, dtype=torch.float32).pin_memory()
                         for n in ("disparity", "confidence")}
        self.use_cuda_graphs = cuda_graphs
        self.graph: torch.cuda.CUDAGraph | None = None
        self.frames = 0
        self.notes: list[str] = []

    def _enqueue(self) -> None:
        self.normaliser.normalise_into(0, self.buffers["left"])
        self.normaliser.normalise_into(1, self.buffers["right"])
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise TensorRTError("TensorRT execute_async_v3 failed")

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        with torch.cuda.stream(self.stream):
            self.normaliser.upload(left_rgb, right_rgb)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._enqueue()
            for name, host in self.host_out.items():
                host.copy_(self.buffers[name].view(host.shape), non_blocking=True)
        self.stream.synchronize()
        self.frames += 1
        if self.use_cuda_graphs and self.graph is None and self.frames == 1:
            self._capture()  # after the first frame: TensorRT has done its lazy allocations
        return StereoResult(self.host_out["disparity"][0, 0].numpy().copy(),
                            self.host_out["confidence"][0, 0].numpy().copy())

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue()
            self.graph = graph
            self.notes.append("CUDA graph captured")
        except RuntimeError as error:  # some TensorRT tactics are not capturable: run without
            self.use_cuda_graphs = False
            self.notes.append(f"CUDA graph capture failed, running without: {error}")
