"""`stereo-depth build-engine`: weights -> ONNX (exported and checked here) -> TensorRT engine + sidecar.

Everything that does not need TensorRT (export, the TensorRT graph checks, the trtexec equivalent)
runs first, so on a machine without TensorRT the command still validates the model and prints the
command to run on the target before it stops with an error.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from ..inference.tensorrt_backend import (PRECISIONS, BuildResult, EngineSpec, TensorRTError, build_engine,
                                          fp32_layer_names, rebuild_command, strongly_typed_only,
                                          tensorrt_unavailable_reason, trtexec_command)
from ..inference.select import default_engine_path
from ..inference.tensorrt_onnx_check import validate_graph
from ..weights import LoadedModel, load_model
from .export import add_model_arguments, export_onnx


def onnx_precision(precision: str, strongly_typed: bool) -> str:
    """Which graph to export: strongly typed builds take their precision from the graph itself."""
    if strongly_typed and precision == "int8":
        raise ValueError("INT8 with a strongly typed network (TensorRT 11, or --strongly-typed) needs an "
                         "explicitly quantised (Q/DQ) ONNX graph, which export does not produce; use "
                         "--precision fp16, or TensorRT 10.x with calibration")
    return "fp16" if strongly_typed and precision == "fp16" else "fp32"


def build(model: LoadedModel, spec: EngineSpec, engine_path: str | Path, strongly_typed: bool | None = None,
          log: Callable[[str], None] = print) -> BuildResult:
    """Export, check, print the trtexec line, build. strongly_typed None: whatever TensorRT supports
    (11.x: strongly typed only; 10.x: builder precision flags). Raises TensorRTError without TensorRT."""
    if spec.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {spec.precision!r}")
    if spec.dla_core is not None and spec.precision == "fp32":
        raise ValueError("DLA runs fp16 or int8 only: use --precision fp16 or int8 with --dla-core")
    engine_path = Path(engine_path)
    reason = tensorrt_unavailable_reason()
    if strongly_typed is None:
        strongly_typed = reason is None and strongly_typed_only()
    # Not engine_path.with_suffix(".onnx"): its sidecar would be the engine's sidecar path.
    onnx_path = engine_path.with_name(engine_path.stem + "-model.onnx")
    export_onnx(model, onnx_path, spec.height, spec.width, precision=onnx_precision(spec.precision, strongly_typed))
    graph = validate_graph(onnx_path)
    log(f"exported and checked {onnx_path} ({len(graph.graph.node)} nodes, all in TensorRT's ONNX operator list)")
    fp32_layers = [] if strongly_typed else fp32_layer_names([n.name for n in graph.graph.node])
    log("trtexec equivalent:\n  " + trtexec_command(onnx_path, engine_path, spec, strongly_typed, fp32_layers))
    if reason is not None:
        raise TensorRTError(f"cannot build a TensorRT engine here: {reason}. The ONNX model {onnx_path} is exported "
                            f"and checked; on the target machine run\n  {rebuild_command(spec, engine_path)}\n"
                            "or the trtexec line above")
    meta = json.loads(onnx_path.with_suffix(".json").read_text())
    return build_engine(onnx_path, engine_path, spec, meta, strongly_typed, log)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--dla-core", type=int, help="build for this DLA core (Jetson) with GPU fallback")
    parser.add_argument("--workspace-mib", type=int, default=4096, help="builder workspace limit")
    parser.add_argument("--timing-cache", help="timing cache file (read if present, written after the build)")
    parser.add_argument("--strongly-typed", action="store_true",
                        help="build a strongly typed network from an fp16 ONNX graph (always so on TensorRT 11)")
    parser.add_argument("--output", help="engine path (default: where the node looks for it, "
                        "$ROS_HOME/stereo_depth/engines/<config>_<W>x<H>_d<D>_<precision>[_dla<N>].engine)")


def run(args: argparse.Namespace) -> int:
    model = load_model(args.config, args.weights, args.max_disparity)
    config = model.config
    spec = EngineSpec(config=config.name, height=args.height or config.height, width=args.width or config.width,
                      max_disparity=config.max_disparity, precision=args.precision, weights=args.weights or "",
                      weights_sha256=model.weights_sha256, dla_core=args.dla_core, workspace_mib=args.workspace_mib,
                      timing_cache=args.timing_cache or "")
    config.check_size(spec.height, spec.width)
    result = build(model, spec, args.output or default_engine_path(spec), True if args.strongly_typed else None)
    meta = result.sidecar
    print(f"wrote {result.engine_path} ({result.engine_path.stat().st_size / 1e6:.1f} MB, sha256 "
          f"{meta['engine_sha256'][:12]}) for TensorRT {meta['tensorrt_version']} on {meta['gpu_name']} "
          f"(sm {meta['compute_capability']}), flags {meta['build_flags']}")
    if result.dla_fallback_layers:
        print(f"{len(result.dla_fallback_layers)} layers fall back from DLA to the GPU:")
        for layer in result.dla_fallback_layers:
            print(f"  {layer}")
    return 0
