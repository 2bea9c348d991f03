"""`stereo-depth export`: PyTorch weights -> static-shape ONNX (opset 17) + JSON sidecar."""
from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from ..inference.base import NORMALISATION
from ..model import ExportWrapper
from ..weights import LoadedModel, load_model, sha256_file

OPSET = 17


def export_onnx(model: LoadedModel, output: str | Path, height: int | None = None, width: int | None = None) -> Path:
    """Write `output` and `output`.json; returns the ONNX path."""
    config = model.config
    height = height or config.height
    width = width or config.width
    config.check_size(height, width)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.net).eval()
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", help="safetensors weights (default: the shipped weights of --config)")
    parser.add_argument("--config", default="fast", help="network config: tiny, fast, accurate")
    parser.add_argument("--height", type=int, help="input height (default: the config's)")
    parser.add_argument("--width", type=int, help="input width (default: the config's)")
    parser.add_argument("--max-disparity", type=int, help="disparities searched, at input resolution")
    parser.add_argument("--output", required=True, help="output .onnx path")


def run(args: argparse.Namespace) -> int:
    model = load_model(args.config, args.weights, args.max_disparity)
    path = export_onnx(model, args.output, args.height, args.width)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}")
    return 0
