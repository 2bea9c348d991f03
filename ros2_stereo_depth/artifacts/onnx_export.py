"""PyTorch weights -> static-shape ONNX (opset 17) + JSON sidecar.

Precision fp32 (default) or fp16. The fp16 graph is for strongly typed TensorRT builds (TensorRT 11
has no FP16 builder flag, and 10.12+ deprecates it: the graph's own types decide). Its inputs and
outputs stay float32 (same interface as fp32); a Cast after each input feeds the fp16 feature CNN,
cost volume and 3D aggregation, while the regression and refinement stay fp32 (model/deploy.py
`half_precision_net`, the split the torch backend runs on CUDA too).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch

from ..config import EXPORT_PRECISIONS, INPUT_NAMES, ONNX_OPSET, OUTPUT_NAMES
from ..model import ExportWrapper
from ..model.deploy import half_precision_net
from ..normalisation import NORMALISATION
from .sidecar import publish, staged
from .weights import LoadedModel


def export_onnx(model: LoadedModel, output: str | Path, height: int | None = None, width: int | None = None,
                precision: str = "fp32") -> Path:
    """Write `output` and `output`.json; returns the ONNX path. precision: fp32 or fp16 (see above).
    The search range is the model's (load_model(max_disparity=...))."""
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f"export precision must be one of {EXPORT_PRECISIONS}, not {precision!r}")
    config = model.config
    height = height or config.height
    width = width or config.width
    config.check_size(height, width)
    output = Path(output)
    net = half_precision_net(model.net) if precision == "fp16" else model.net
    wrapper = ExportWrapper(net).eval()
    example = torch.zeros(1, 3, height, width)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about int() of static sizes: intended
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(wrapper, (example, example), str(raw), opset_version=ONNX_OPSET, dynamo=False,
                          input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                          do_constant_folding=True)
        graph = _simplify(onnx.load(str(raw)))
    onnx.checker.check_model(graph)
    sidecar: dict[str, Any] = {
        "config": config.name,
        "architecture": config.architecture(),
        "input_height": height,
        "input_width": width,
        "max_disparity": config.max_disparity,
        "opset": ONNX_OPSET,
        "precision": precision,
        "inputs": {name: [1, 3, height, width] for name in INPUT_NAMES},
        "outputs": {name: [1, 1, height, width] for name in OUTPUT_NAMES},
        "normalisation": NORMALISATION,
        "weights": str(model.weights_path) if model.weights_path else None,
        "weights_sha256": model.weights_sha256,
    }
    with staged(output) as tmp_onnx:
        onnx.save(graph, str(tmp_onnx))
        publish(tmp_onnx, output, "onnx", sidecar)
    return output


def _simplify(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Fold the tracer's Shape/Gather/Concat chains into constants: TensorRT gets static shapes
    and no run-time int64 index arithmetic."""
    import onnxsim

    simplified, ok = onnxsim.simplify(graph)
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified graph")
    return simplified
