"""What an engine is built from, where it lives, the commands that build it, and the checks of an
engine's sidecar against a request and the running platform. No TensorRT needed: testable anywhere."""
from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import default_engine_dir
from .sidecar import sidecar_problems
from .tensorrt_env import PlatformInfo, TensorRTError

DEFAULT_WORKSPACE_MIB = 4096
# ONNX node-name prefix of the soft-argmin regression (model/regression.py). In weakly typed fp16/int8
# builds it and every layer after it (refinement, upsampling) stay fp32, like the fp16 ONNX graph
# (onnx_export.py): an fp16 softmax over D/4 bins and fp16 disparities (1/8 px step above 128 px) lose
# the sub-pixel part.
FP32_FROM_PREFIX = "/net/regression/"


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
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: str = ""  # empty: timing_cache_path() for the building platform
    strongly_typed: bool | None = None  # None: default_strongly_typed() of the building TensorRT

    def __post_init__(self) -> None:
        if self.dla_core is not None and self.dla_core < 0:
            raise ValueError(f"--dla-core must be >= 0, not {self.dla_core} (omit it for GPU only)")
        if self.workspace_mib <= 0:
            raise ValueError(f"--workspace-mib must be positive, not {self.workspace_mib}")


def default_engine_path(spec: EngineSpec) -> Path:
    dla = f"_dla{spec.dla_core}" if spec.dla_core is not None else ""
    name = f"{spec.config}_{spec.width}x{spec.height}_d{spec.max_disparity}_{spec.precision}{dla}.engine"
    return default_engine_dir() / name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def timing_cache_path(platform: PlatformInfo) -> Path:
    """One timing cache per TensorRT version and GPU model: a cache from another never gets loaded."""
    return default_engine_dir() / "timing" / f"{_slug(platform.tensorrt_version)}_{_slug(platform.gpu_name)}.cache"


def calibration_cache_path(engine_path: str | Path, onnx_sha256: str) -> Path:
    """INT8 scales belong to a graph (weights, input size, search range), not to an engine name."""
    return Path(engine_path).parent / "calibration" / f"{onnx_sha256[:16]}.calib"


def rebuild_command(spec: EngineSpec, engine_path: str | Path) -> str:
    """The exact `stereo-depth build-engine` command that (re)builds `engine_path` as specified."""
    args = ["stereo-depth", "build-engine", "--config", spec.config]
    if spec.weights:
        args += ["--weights", spec.weights]
    args += ["--height", str(spec.height), "--width", str(spec.width), "--max-disparity", str(spec.max_disparity),
             "--precision", spec.precision, "--workspace-mib", str(spec.workspace_mib)]
    if spec.strongly_typed is not None:
        args.append("--strongly-typed" if spec.strongly_typed else "--weakly-typed")
    if spec.dla_core is not None:
        args += ["--dla-core", str(spec.dla_core)]
    if spec.timing_cache:
        args += ["--timing-cache", spec.timing_cache]
    return shlex.join(args + ["--output", str(engine_path)])


def one_line(cause: str, command: str) -> str:
    """The single line that says why TensorRT is not used and how to get an engine."""
    return f"{' '.join(cause.split())}; build the engine on the target with: {command}"


def fp32_layer_names(names_in_topological_order: Sequence[str]) -> list[str]:
    """The regression's nodes/layers and all after them: kept fp32 in weakly typed fp16/int8 builds."""
    # Constants are hoisted to the front of the graph by the simplifier: not where the regression starts.
    start = next((i for i, n in enumerate(names_in_topological_order)
                  if n.startswith(FP32_FROM_PREFIX) and not n.rsplit("/", 1)[-1].startswith("Constant")), None)
    if start is None:
        raise TensorRTError(f"no layer named {FP32_FROM_PREFIX}*: cannot keep the regression in fp32")
    return [n for n in names_in_topological_order[start:] if n]


def trtexec_command(onnx_path: str | Path, engine_path: str | Path, spec: EngineSpec, strongly_typed: bool,
                    fp32_layers: Sequence[str] = (), calibration_cache: str | Path | None = None) -> str:
    """The trtexec line equivalent to our build (for checking or building on a target by hand)."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--memPoolSize=workspace:{spec.workspace_mib}M"]
    if strongly_typed:
        args.append("--stronglyTyped")  # precision is in the (fp16) ONNX graph
    elif spec.precision in ("fp16", "int8"):
        args.append("--fp16")
        if spec.precision == "int8":
            args.append("--int8")
            if calibration_cache is not None:
                args.append(f"--calib={calibration_cache}")
        if fp32_layers:
            args += ["--precisionConstraints=prefer",
                     "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in fp32_layers),
                     "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in fp32_layers)]
    if spec.dla_core is not None:
        args += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.timing_cache:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    return shlex.join(args)


def engine_problems(engine_path: str | Path, expected: EngineSpec | None = None,
                    platform: PlatformInfo | None = None) -> list[str]:
    """Why the engine at `engine_path` must not be used (empty: it is usable). File integrity always;
    the request (`expected`) and the running TensorRT/GPU (`platform`) when given."""
    meta, problems = sidecar_problems(engine_path, "engine")
    if meta is None or problems:
        return problems
    if platform is not None:
        problems += platform_problems(meta, platform)
    if expected is not None:
        wanted: dict[str, object] = {"config": expected.config, "input_height": expected.height,
                                     "input_width": expected.width, "max_disparity": expected.max_disparity,
                                     "precision": expected.precision, "weights_sha256": expected.weights_sha256,
                                     "dla_core": expected.dla_core}
        for key, value in wanted.items():
            if meta.get(key) != value:
                problems.append(f"engine has {key}={meta.get(key)!r}, wanted {value!r}")
    return problems


def platform_problems(meta: dict[str, Any], platform: PlatformInfo) -> list[str]:
    """An engine runs only on the TensorRT version and GPU model that built it: the same compute
    capability is not enough (an AGX Orin engine on an Orin Nano has other SM counts and DLA cores)."""
    problems = []
    if meta.get("tensorrt_version") != platform.tensorrt_version:
        problems.append(f"engine built with TensorRT {meta.get('tensorrt_version')}, running "
                        f"{platform.tensorrt_version}")
    if meta.get("compute_capability") != platform.compute_capability:
        problems.append(f"engine built for compute capability {meta.get('compute_capability')} "
                        f"({meta.get('gpu_name')}), this GPU is {platform.compute_capability} ({platform.gpu_name})")
    elif meta.get("gpu_name") != platform.gpu_name:
        problems.append(f"engine built on a {meta.get('gpu_name')}, this GPU is a {platform.gpu_name}")
    return problems
