"""`stereo-depth export`: PyTorch weights -> static-shape ONNX + JSON sidecar (artifacts/onnx_export.py)."""
from __future__ import annotations

import argparse

from ..artifacts.onnx_export import export_onnx
from ..config import EXPORT_PRECISIONS
from .args import add_model_arguments, input_size, load_model_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--precision", choices=EXPORT_PRECISIONS, default="fp32",
                        help="fp16: fp16 feature/cost-volume/3D stages, fp32 I/O, regression and refinement")
    parser.add_argument("--output", required=True, help="output .onnx path")


def run(args: argparse.Namespace) -> int:
    model = load_model_from_args(args)
    height, width = input_size(args, model)
    path = export_onnx(model, args.output, height, width, args.precision)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}")
    return 0
