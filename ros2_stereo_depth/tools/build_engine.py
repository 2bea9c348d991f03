"""`stereo-depth build-engine`: weights -> ONNX (exported and checked) -> TensorRT engine + sidecar
(artifacts/engine_build.py). Without TensorRT it still exports and checks the model and prints the
commands to run on the target, then stops with an error."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..artifacts.engine_build import build
from ..artifacts.engine_spec import DEFAULT_WORKSPACE_MIB, EngineSpec, default_engine_path
from ..artifacts.weights import LoadedModel
from ..config import ENGINE_PRECISIONS
from .args import add_model_arguments, input_size, load_model_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=ENGINE_PRECISIONS, default="fp16")
    parser.add_argument("--dla-core", type=int, help="build for this DLA core (>= 0, Jetson) with GPU fallback")
    parser.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace limit")
    parser.add_argument("--timing-cache", help="timing cache file (default: one per TensorRT version and GPU "
                        "model under $ROS_HOME/stereo_depth/engines/timing)")
    typing = parser.add_mutually_exclusive_group()
    typing.add_argument("--strongly-typed", dest="strongly_typed", action="store_const", const=True,
                        help="precision from an fp16 ONNX graph (default from TensorRT 10.12; always on 11)")
    typing.add_argument("--weakly-typed", dest="strongly_typed", action="store_const", const=False,
                        help="builder precision flags with the regression pinned to fp32 (TensorRT 10.x; int8)")
    parser.add_argument("--output", help="engine path (default: where the node looks for it, "
                        "$ROS_HOME/stereo_depth/engines/<config>_<W>x<H>_d<D>_<precision>[_dla<N>].engine)")


def spec_and_output(args: argparse.Namespace, model: LoadedModel) -> tuple[EngineSpec, Path]:
    height, width = input_size(args, model)
    spec = EngineSpec(config=model.config.name, height=height, width=width, max_disparity=model.config.max_disparity,
                      precision=args.precision, weights=args.weights or "", weights_sha256=model.weights_sha256,
                      dla_core=args.dla_core, workspace_mib=args.workspace_mib, timing_cache=args.timing_cache or "",
                      strongly_typed=args.strongly_typed)
    return spec, Path(args.output) if args.output else default_engine_path(spec)


def run(args: argparse.Namespace) -> int:
    model = load_model_from_args(args)
    spec, output = spec_and_output(args, model)
    result = build(model, spec, output)
    meta = result.sidecar
    print(f"wrote {result.engine_path} ({result.engine_path.stat().st_size / 1e6:.1f} MB, sha256 "
          f"{meta['sha256'][:12]}) for TensorRT {meta['tensorrt_version']} on {meta['gpu_name']} "
          f"(sm {meta['compute_capability']}), flags {meta['build_flags']}")
    if result.dla_fallback_layers:
        print(f"{len(result.dla_fallback_layers)} layers fall back from DLA to the GPU:")
        for layer in result.dla_fallback_layers:
            print(f"  {layer}")
    return 0
