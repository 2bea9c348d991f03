"""`stereo-depth export`: PyTorch weights -> static-shape ONNX (opset 17) + JSON sidecar.

Precision fp32 (default) or fp16. The fp16 graph is for strongly typed TensorRT builds (TensorRT 11
has no FP16 builder flag: the graph's own types decide). Its inputs and outputs stay float32 (same
interface as fp32); a Cast after each input feeds the fp16 feature CNN, cost volume and 3D
aggregation; softmax/soft-argmin (regression.py casts to float) and the 2D refinement stay fp32,
because fp16 has a 1/16 px step above 64 px and a softmax over D/4 bins loses the sub-pixel part.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from ..normalisation import NORMALISATION
from ..model import ExportWrapper, StereoNet
from ..weights import LoadedModel, load_model, sha256_file

OPSET = 17
PRECISIONS = ("fp32", "fp16")
# Stages of StereoNet that run in fp16 in the fp16 graph (attribute names on StereoNet).
HALF_STAGES = ("features", "cost_volume", "aggregation")


class _HalfStage(torch.nn.Module):
    """Runs a stage in fp16: casts its tensor inputs to half (the Casts TensorRT sees)."""

    def __init__(self, stage: torch.nn.Module) -> None:
        super().__init__()
        self.stage = stage.half()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.stage(*(x.half() for x in inputs))  # type: ignore[no-any-return]


def half_precision_net(net: StereoNet) -> StereoNet:
    """A copy of `net` whose HALF_STAGES run in fp16; regression and refinement stay fp32.
    StereoNet.forward is reused unchanged: it calls the stages by attribute."""
    half = copy.deepcopy(net).eval()
    for name in HALF_STAGES:
        setattr(half, name, _HalfStage(getattr(half, name)))
    return half


def export_onnx(model: LoadedModel, output: str | Path, height: int | None = None, width: int | None = None,
                precision: str = "fp32") -> Path:
    """Write `output` and `output`.json; returns the ONNX path. precision: fp32 or fp16 (see above)."""
    if precision not in PRECISIONS:
        raise ValueError(f"export precision must be one of {PRECISIONS}, not {precision!r}")
    config = model.config
    height = height or config.height
    width = width or config.width
    config.check_size(height, width)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    net = half_precision_net(model.net) if precision == "fp16" else model.net
    wrapper = ExportWrapper(net).eval()
    example = torch.zeros(1, 3, height, width)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about int() of static sizes: intended
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(wrapper, (example, example), str(raw), opset_version=OPSET, dynamo=False,
                          input_names=["left", "right"], output_names=["disparity", "confidence"],
                          do_constant_folding=True)
        graph = _simplify(onnx.load(str(raw)))
    onnx.checker.check_model(graph)
    onnx.save(graph, str(output))
    sidecar: dict[str, Any] = {
        "config": config.name,
        "model_config": config.to_dict(),
        "input_height": height,
        "input_width": width,
        "max_disparity": config.max_disparity,
        "opset": OPSET,
        "precision": precision,
        "inputs": {"left": [1, 3, height, width], "right": [1, 3, height, width]},
        "outputs": {"disparity": [1, 1, height, width], "confidence": [1, 1, height, width]},
        "normalisation": NORMALISATION,
        "weights": str(model.weights_path) if model.weights_path else None,
        "weights_sha256": model.weights_sha256,
        "onnx_sha256": sha256_file(output),
    }
    output.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return output


def _simplify(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Fold the tracer's Shape/Gather/Concat chains into constants: TensorRT gets static shapes
    and no run-time int64 index arithmetic."""
    import onnxsim

    simplified, ok = onnxsim.simplify(graph)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified graph")
    return simplified


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which network, at which static input size: shared by export and build-engine."""
    parser.add_argument("--weights", help="safetensors weights (default: the shipped weights of --config)")
    parser.add_argument("--config", default="fast", help="network config: tiny, fast, accurate")
    parser.add_argument("--height", type=int, help="input height (default: the config's)")
    parser.add_argument("--width", type=int, help="input width (default: the config's)")
    parser.add_argument("--max-disparity", type=int, help="disparities searched, at input resolution")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp16: fp16 feature/cost-volume/3D stages, fp32 I/O, regression and refinement")
    parser.add_argument("--output", required=True, help="output .onnx path")


def run(args: argparse.Namespace) -> int:
    model = load_model(args.config, args.weights, args.max_disparity)
    path = export_onnx(model, args.output, args.height, args.width, args.precision)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}")
    return 0
