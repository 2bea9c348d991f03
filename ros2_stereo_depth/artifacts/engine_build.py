"""Weights -> ONNX (exported and checked) -> TensorRT engine + sidecar (`stereo-depth build-engine`, and
`build_engine_if_missing` in backend selection).

Everything that does not need TensorRT (export, the graph checks, the trtexec equivalent) runs first, so
on a machine without TensorRT the model is still validated and the command to run on the target printed
before a TensorRTError. The engine and its sidecar are written under temporary names and renamed last.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..config import ENGINE_PRECISIONS
from ..normalisation import NORMALISATION
from .engine_spec import (EngineSpec, calibration_cache_path, fp32_layer_names, rebuild_command, timing_cache_path,
                          trtexec_command)
from .onnx_check import validate_graph
from .onnx_export import export_onnx
from .sidecar import publish, read_sidecar, sha256_file, staged, write_json
from .tensorrt_env import (TensorRTError, current_platform, default_strongly_typed, deserialize_engine, dims_tuple,
                           strongly_typed_only, tensorrt_unavailable_reason, tensorrt_version)
from .weights import LoadedModel

if TYPE_CHECKING:
    import tensorrt as trt
else:
    from .tensorrt_env import trt

Log = Callable[[str], None]


@dataclass
class BuildResult:
    engine_path: Path
    sidecar: dict[str, Any]
    dla_fallback_layers: list[str] = field(default_factory=list)


def onnx_precision(precision: str, strongly_typed: bool) -> str:
    """Which graph to export: strongly typed builds take their precision from the graph itself."""
    if strongly_typed and precision == "int8":
        raise ValueError("INT8 with a strongly typed network (TensorRT 11, or --strongly-typed) needs an "
                         "explicitly quantised (Q/DQ) ONNX graph, which export does not produce; use "
                         "--precision fp16, or TensorRT 10.x with calibration (--weakly-typed)")
    return "fp16" if strongly_typed and precision == "fp16" else "fp32"


def resolve_strongly_typed(spec: EngineSpec, tensorrt_present: bool) -> bool:
    """The caller's choice; else strongly typed where TensorRT supports only that (11.x) or deprecates
    weak typing (10.12+). Without TensorRT: weakly typed (the TensorRT 10.x line printed for the target)."""
    if tensorrt_present and strongly_typed_only():
        if spec.strongly_typed is False:
            raise ValueError(f"TensorRT {tensorrt_version()} builds strongly typed networks only: drop --weakly-typed")
        return True
    if spec.strongly_typed is not None:
        return spec.strongly_typed
    return tensorrt_present and default_strongly_typed(tensorrt_version(), spec.precision)


def build(model: LoadedModel, spec: EngineSpec, engine_path: str | Path, log: Log = print,
          calibration_samples: int = 64) -> BuildResult:
    """Export, check, print the trtexec line, build. Raises TensorRTError without TensorRT."""
    if spec.precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision must be one of {ENGINE_PRECISIONS}, not {spec.precision!r}")
    if spec.dla_core is not None and spec.precision == "fp32":
        raise ValueError("DLA runs fp16 or int8 only: use --precision fp16 or int8 with --dla-core")
    engine_path = Path(engine_path)
    reason = tensorrt_unavailable_reason()
    strongly_typed = resolve_strongly_typed(spec, reason is None)
    # Not engine_path.with_suffix(".onnx"): its sidecar would be the engine's sidecar path.
    onnx_path = engine_path.with_name(engine_path.stem + "-model.onnx")
    export_onnx(model, onnx_path, spec.height, spec.width, precision=onnx_precision(spec.precision, strongly_typed))
    graph = validate_graph(onnx_path)
    onnx_sha256 = sha256_file(onnx_path)
    log(f"exported and checked {onnx_path} ({len(graph.graph.node)} nodes, all in TensorRT's ONNX operator list)")
    fp32_layers = [] if strongly_typed else fp32_layer_names([n.name for n in graph.graph.node])
    calibration = calibration_cache_path(engine_path, onnx_sha256) if spec.precision == "int8" else None
    log("trtexec equivalent:\n  " + trtexec_command(onnx_path, engine_path, spec, strongly_typed, fp32_layers,
                                                    calibration))
    if reason is not None:
        raise TensorRTError(f"cannot build a TensorRT engine here: {reason}. The ONNX model {onnx_path} is exported "
                            f"and checked; on the target machine run\n  {rebuild_command(spec, engine_path)}\n"
                            "or the trtexec line above")
    spec = dataclasses.replace(spec, strongly_typed=strongly_typed)  # the sidecar's command: this exact build
    return build_engine(onnx_path, engine_path, spec, log, calibration_samples)


def _parser_errors(parser: trt.OnnxParser) -> str:
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        # node_name/node_operator exist from TensorRT 10.0; older parsers only give the node index.
        name = error.node_name() if hasattr(error, "node_name") else f"#{error.node()}"
        operator = error.node_operator() if hasattr(error, "node_operator") else "?"
        lines.append(f"node {name} ({operator}): {error.desc()} [{error.code()}]")
    return "TensorRT's ONNX parser rejected the graph:\n  " + "\n  ".join(lines)


def _pin_fp32(network: trt.INetworkDefinition) -> list[str]:
    """Weakly typed fp16/int8 builds: keep regression, refinement and upsampling in fp32. Shape tensors
    (int64 sizes computed by TensorRT) and non-float outputs are left alone: pinning them is an error."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]  # parser order: topological
    keep = set(fp32_layer_names([layer.name for layer in layers]))
    pinned = []
    for layer in layers:
        if layer.name not in keep:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if any(t.is_shape_tensor for t in outputs):
            continue
        floats = [j for j, t in enumerate(outputs) if t.dtype in (trt.DataType.FLOAT, trt.DataType.HALF)]
        if not floats:
            continue
        layer.precision = trt.DataType.FLOAT
        for j in floats:
            layer.set_output_type(j, trt.DataType.FLOAT)
        pinned.append(layer.name)
    return pinned


_REDUCED = re.compile(r"\b(FP16|Half|BF16|Int8|FP8)\b", re.IGNORECASE)


def layers_not_fp32(engine_information: dict[str, Any], pinned: Iterable[str]) -> list[str]:
    """Engine layers (inspector JSON, DETAILED verbosity) that contain a pinned layer but output a reduced
    precision: PREFER_PRECISION_CONSTRAINTS is best effort, so the built engine is what counts."""
    pinned = [p for p in pinned if p]
    found = []
    for layer in engine_information.get("Layers", []):
        if not isinstance(layer, dict):  # names only: the engine was not built with DETAILED verbosity
            continue
        name = str(layer.get("Name", ""))
        if not any(p in name for p in pinned):
            continue
        formats = [str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", []) if isinstance(o, dict)]
        reduced = [f for f in formats if _REDUCED.search(f)]
        if reduced:
            found.append(f"{name}: {', '.join(reduced)}")
    return found


def _attach_timing_cache(config: trt.IBuilderConfig, path: Path, log: Log) -> trt.ITimingCache:
    """Load `path` into the builder; a cache from another GPU or TensorRT version is refused by
    set_timing_cache (False): then start a fresh one instead of failing after the build."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, False):
        return cache
    log(f"timing cache {path} does not fit this GPU / TensorRT {tensorrt_version()}: starting a fresh one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise TensorRTError("TensorRT refused an empty timing cache")
    return cache


def _save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:  # nothing was attached or TensorRT dropped it: keep whatever file is there
        return
    with staged(path) as tmp:
        tmp.write_bytes(bytes(memoryview(cache.serialize())))
        tmp.replace(path)


def build_engine(onnx_path: str | Path, engine_path: str | Path, spec: EngineSpec, log: Log = print,
                 calibration_samples: int = 64) -> BuildResult:
    """Parse `onnx_path`, build, write the engine and its sidecar (temporary names, renamed last).
    spec.strongly_typed must be resolved (resolve_strongly_typed). Raises TensorRTError."""
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise TensorRTError(f"cannot build a TensorRT engine: {reason}")
    strongly_typed = bool(spec.strongly_typed)
    engine_path = Path(engine_path)
    onnx_meta = read_sidecar(onnx_path, "onnx") or {}
    onnx_sha256 = sha256_file(onnx_path)
    device = torch.device("cuda", 0)
    platform = current_platform(device.index or 0)
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
    pinned: list[str] = []
    calibration: Path | None = None
    if not strongly_typed and spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        flag_names.append("FP16")
        if spec.precision == "int8":
            from .calibrator import make_calibrator  # synthetic scenes: only for INT8 builds

            calibration = calibration_cache_path(engine_path, onnx_sha256)
            config.set_flag(trt.BuilderFlag.INT8)
            flag_names.append("INT8")
            config.int8_calibrator = make_calibrator(spec.height, spec.width, spec.max_disparity,
                                                     calibration_samples, calibration, device)
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
        # 3D convolutions and MatMul on activations cannot run on DLA; the softmax could, but not in fp32.
        fallback = [f"{layer.name} ({layer.type.name})" for layer in
                    (network.get_layer(i) for i in range(network.num_layers)) if not config.can_run_on_DLA(layer)]
        log(f"DLA core {spec.dla_core}: {network.num_layers - len(fallback)} of {network.num_layers} layers can run "
            f"on DLA; {len(fallback)} fall back to the GPU")
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer precisions for the inspector
    timing_cache = Path(spec.timing_cache) if spec.timing_cache else timing_cache_path(platform)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    _attach_timing_cache(config, timing_cache, log)
    log(f"building {engine_path} with TensorRT {tensorrt_version()} ({', '.join(flag_names) or 'fp32'}"
        f"{f', {len(pinned)} layers pinned to fp32' if pinned else ''}); this takes minutes")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TensorRTError("TensorRT failed to build the engine (see its log above)")
    engine_bytes = bytes(memoryview(serialized))
    _save_timing_cache(config, timing_cache)
    with torch.cuda.device(device):
        _, engine = deserialize_engine(logger, engine_bytes, spec.dla_core, f"the engine just built for {engine_path}")
    information = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    not_fp32 = layers_not_fp32(information, pinned)
    if not_fp32:
        log(f"WARNING: TensorRT did not keep {len(not_fp32)} layers of the regression in fp32 "
            f"(PREFER_PRECISION_CONSTRAINTS is best effort): {'; '.join(not_fp32[:5])}. "
            "Sub-pixel accuracy may suffer; --strongly-typed builds from an fp16 graph that fixes it.")
    sidecar: dict[str, Any] = {
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
        "fp32_pinned_layers": len(pinned),
        "fp32_pin_not_honoured": not_fp32,
        "timing_cache": str(timing_cache),
        "calibration_cache": str(calibration) if calibration is not None else None,
        "io": engine_io(engine),
        "config": spec.config,
        "input_height": spec.height,
        "input_width": spec.width,
        "max_disparity": spec.max_disparity,
        "normalisation": onnx_meta.get("normalisation", NORMALISATION),
        "onnx_precision": onnx_meta.get("precision"),
        "onnx_sha256": onnx_sha256,
        "weights": onnx_meta.get("weights"),
        "weights_sha256": spec.weights_sha256,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rebuild_command": rebuild_command(spec, engine_path),
    }
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(engine_path.with_suffix(".layers.json"), information)
    with staged(engine_path) as tmp:
        tmp.write_bytes(engine_bytes)
        meta = publish(tmp, engine_path, "engine", sidecar)
    return BuildResult(engine_path, meta, fallback)


def engine_io(engine: trt.ICudaEngine) -> list[dict[str, Any]]:
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io.append({"name": name, "mode": engine.get_tensor_mode(name).name,
                   "shape": list(dims_tuple(engine.get_tensor_shape(name))),
                   "dtype": engine.get_tensor_dtype(name).name})
    return io
