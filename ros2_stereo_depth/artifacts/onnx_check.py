"""Static checks that an exported ONNX graph will import into the TensorRT ONNX parsers we target
(TensorRT 10.3 on JetPack 6, 10.13, 11.x; see tensorrt_onnx_ops.txt). No TensorRT needed.

`stereo-depth build-engine` runs these before building, and CI runs them on every config: an
operator missing from the parser's list or a run-time shape computation fails here, on a laptop,
instead of on the Jetson after a long build.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from onnx import TensorProto, helper, shape_inference

from ..config import INPUT_NAMES, OUTPUT_NAMES

OPS_FILE = Path(__file__).resolve().parent / "tensorrt_onnx_ops.txt"

# Project policy beyond the parser's list: control flow, shape arithmetic and gather/scatter would
# mean dynamic shapes or index math at run time (slow or unsupported on DLA, fragile across
# TensorRT versions); GridSample is 4D-only in TensorRT and the cost volume must not need it.
FORBIDDEN_OPS = frozenset({
    "Loop", "If", "Scan", "Shape", "Size", "Gather", "GatherElements", "GatherND", "Scatter",
    "ScatterElements", "ScatterND", "NonZero", "GridSample", "Range", "ConstantOfShape", "Expand",
    "NonMaxSuppression", "Unique",
})
RESIZE_MODES = frozenset({"nearest", "linear"})  # cubic has 2D-only restrictions: not used here
RESIZE_COORDINATE_MODES = frozenset({
    "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn"})
PAD_MODES = frozenset({"constant", "reflect", "edge", "wrap"})  # wrap: parser 10.0+
TOPK_MAX_K = 3840  # TensorRT's ITopKLayer limit
# Inputs that TensorRT needs as build-time constants (initializer or Constant node).
CONSTANT_INPUTS = {
    "Reshape": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Resize": (1, 2, 3), "TopK": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMean": (1,),
}


def supported_ops(path: Path = OPS_FILE) -> frozenset[str]:
    """Operator names of the TensorRT ONNX parser list kept in the repo."""
    names = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return frozenset(name for name in names if name)


def op_counts(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return dims


def _static(value: onnx.ValueInfoProto) -> bool:
    t = value.type.tensor_type
    return t.HasField("shape") and all(isinstance(d, int) and d > 0 for d in _dims(value))


def check_graph(model: onnx.ModelProto) -> list[str]:
    """Everything that would stop or slow a TensorRT build of `model`; empty when it is fine."""
    problems: list[str] = []
    allowed = supported_ops()
    graph = model.graph
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    for node in graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
        elif node.op_type not in allowed:
            problems.append(f"{where}: not in the operator list of every TensorRT ONNX parser we target")
        if node.op_type in FORBIDDEN_OPS:
            problems.append(f"{where}: forbidden by project policy (control flow, shape/index arithmetic "
                            "or GridSample)")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        for index in CONSTANT_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and node.input[index] not in constants:
                problems.append(f"{where}: input {index} ({node.input[index]}) is computed at run time; "
                                "TensorRT needs it constant")
        if node.op_type == "Resize":
            mode = _text(attrs.get("mode", b"nearest"))
            coord = _text(attrs.get("coordinate_transformation_mode", b"half_pixel"))
            if mode not in RESIZE_MODES:
                problems.append(f"{where}: Resize mode {mode!r} (only {sorted(RESIZE_MODES)} are allowed)")
            if coord not in RESIZE_COORDINATE_MODES:
                problems.append(f"{where}: Resize coordinate_transformation_mode {coord!r} is unsupported")
            if attrs.get("antialias", 0):
                problems.append(f"{where}: Resize antialias is unsupported")
        elif node.op_type == "Pad":
            mode = _text(attrs.get("mode", b"constant"))
            if mode not in PAD_MODES:
                problems.append(f"{where}: Pad mode {mode!r} is unsupported")
        elif node.op_type == "TopK":
            k = _constant_value(model, node.input[1]) if len(node.input) > 1 else None
            if k is None:
                problems.append(f"{where}: TopK k must be an initializer or Constant")
            elif max(k) > TOPK_MAX_K:
                problems.append(f"{where}: TopK k={max(k)} exceeds TensorRT's {TOPK_MAX_K}")
    problems += _check_types_and_shapes(model, constants)
    problems += _check_io(model)
    return problems


def validate_graph(path: str | Path) -> onnx.ModelProto:
    """Load and check `path`; raise ValueError listing every problem."""
    model = onnx.load(str(path))
    problems = check_graph(model)
    if problems:
        raise ValueError(f"{path}: not a valid TensorRT input graph:\n  " + "\n  ".join(problems))
    return model


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _constant_value(model: onnx.ModelProto, name: str) -> list[int] | None:
    for init in model.graph.initializer:
        if init.name == name:
            return [int(v) for v in onnx.numpy_helper.to_array(init).reshape(-1)]
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    return [int(v) for v in onnx.numpy_helper.to_array(attr.t).reshape(-1)]
    return None


def _check_types_and_shapes(model: onnx.ModelProto, constants: set[str]) -> list[str]:
    """Static shapes everywhere and no int64 tensor produced by a computing node (i.e. no shape
    or index arithmetic at run time) after ONNX shape inference."""
    problems: list[str] = []
    inferred = shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    values = list(graph.input) + list(graph.value_info) + list(graph.output)
    known = {v.name for v in values}
    for value in values:
        if not _static(value):
            problems.append(f"tensor {value.name}: shape {_dims(value)} is not fully static")
        if value.type.tensor_type.elem_type == TensorProto.INT64 and value.name not in constants:
            problems.append(f"tensor {value.name}: int64 computed at run time")
    for node in graph.node:
        for out in node.output:
            if out and out not in known and out not in constants:
                problems.append(f"tensor {out} (from {node.name or node.op_type}): no shape after inference")
    return problems


def _check_io(model: onnx.ModelProto) -> list[str]:
    problems: list[str] = []
    inputs = [v for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    got_in, got_out = tuple(v.name for v in inputs), tuple(v.name for v in model.graph.output)
    if got_in != INPUT_NAMES:
        problems.append(f"inputs are {got_in}, expected {INPUT_NAMES}")
    if got_out != OUTPUT_NAMES:
        problems.append(f"outputs are {got_out}, expected {OUTPUT_NAMES}")
    for value, channels in [(v, 3) for v in inputs] + [(v, 1) for v in model.graph.output]:
        dims = _dims(value)
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            problems.append(f"{value.name}: must be float32")
        if len(dims) != 4 or not _static(value) or dims[1] != channels:
            problems.append(f"{value.name}: shape {dims}, expected static N x {channels} x H x W")
    return problems
