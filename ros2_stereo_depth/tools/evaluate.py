"""`stereo-depth evaluate`: the network and OpenCV StereoSGBM against ground truth (evaluation/protocol.py)."""
from __future__ import annotations

import argparse
import json

from ..evaluation.network import NetworkSettings
from ..evaluation.pairs import evaluation_pairs
from ..evaluation.protocol import SGBM_MODES, EvaluationSettings, evaluate, format_table
from ..inference.select import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="fast", help="network config (tiny, fast, accurate)")
    parser.add_argument("--weights", default="", help="safetensors weights (default: shipped weights of --config)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="as the node's parameter; auto: a valid TensorRT engine, else ONNX Runtime")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="engine precision; torch on CUDA: fp16 autocast unless fp32")
    parser.add_argument("--native", action="store_true",
                        help="run the network at the image's own size (padded to its size multiple) instead of "
                             "the node's input size")
    parser.add_argument("--height", type=int, default=0, help="node path: network input height (default: the config's)")
    parser.add_argument("--width", type=int, default=0, help="node path: network input width (default: the config's)")
    parser.add_argument("--max-disparity", type=int, default=0,
                        help="network search range at its input resolution (default: the node's)")
    parser.add_argument("--dataset", help="dataset directory (see data/readers.py)")
    parser.add_argument("--format", default="auto", help="dataset format; auto-detected by layout by default")
    parser.add_argument("--left", help="left image of a single pair")
    parser.add_argument("--right", help="right image of a single pair")
    parser.add_argument("--gt", help="ground-truth disparity of the left image (PNG or PFM)")
    parser.add_argument("--gt-scale", type=float, default=None,
                        help="8-bit PNG ground truth: disparity = value / this (Middlebury 2005/06: 1 full, 2 half, "
                             "3 third size; default 1 for --gt, guessed from the width for a middlebury2006 dataset)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize images and ground truth by this first (default 1: full resolution)")
    parser.add_argument("--sgbm", choices=SGBM_MODES, default="tuned",
                        help="tuned: SGBM at the network's search range and tuned on the ground truth (default); "
                             "given: only the former; none: network only")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="network pixels below this confidence are not predictions (default: the node's 0)")
    parser.add_argument("--threads", type=int, default=0, help="CPU inference threads (0: library default)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--verbose", action="store_true", help="one line per pair")


def run(args: argparse.Namespace) -> int:
    if args.native and (args.height or args.width):
        raise ValueError("--native runs the network at the image size: --height / --width do not apply")
    network = NetworkSettings(backend=args.backend, config=args.config, weights=args.weights, native=args.native,
                              height=args.height, width=args.width, max_disparity=args.max_disparity,
                              precision=args.precision, threads=args.threads, min_confidence=args.min_confidence)
    settings = EvaluationSettings(network=network, scale=args.scale, sgbm=args.sgbm)
    pairs = evaluation_pairs(args.dataset, args.format, args.gt_scale, args.left, args.right, args.gt)
    report = evaluate(pairs, settings, verbose=args.verbose)
    print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_table(report))
    return 0
