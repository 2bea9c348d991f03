"""`stereo-depth evaluate`: the network and OpenCV StereoSGBM against ground truth (evaluation/protocol.py)."""
from __future__ import annotations

import argparse
import json

from ..evaluation.network import NetworkSettings
from ..evaluation.pairs import evaluation_pairs
from ..evaluation.protocol import SGBM_MODES, EvaluationSettings, evaluate, format_table
from .args import add_backend_arguments, add_matching_arguments, add_model_arguments, backend_request, local_matching


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)  # --height/--width: the node path's network input
    add_backend_arguments(parser)  # --backend as the node's parameter
    add_matching_arguments(parser)
    parser.add_argument("--native", action="store_true",
                        help="run the network at the image's own size (padded to its size multiple) instead of "
                             "the node's input size; --max-disparity is then at the image resolution")
    parser.add_argument("--dataset", help="dataset directory (see data/readers.py)")
    parser.add_argument("--format", default="auto", help="dataset format; auto-detected by layout by default")
    parser.add_argument("--frames", default="",
                        help="START:END frames of a held-out-domain recording (--dataset DIR with DIR/bag and "
                             "DIR/ground_truth.npz, from python -m ros2_stereo_depth.data.heldout_bag)")
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
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--picture", default="", help="write a PNG of the first pair: left | network | tuned SGBM "
                                                      "| ground truth, with a colour scale")
    parser.add_argument("--verbose", action="store_true", help="one line per pair")


def run(args: argparse.Namespace) -> int:
    if args.native and (args.height or args.width):
        raise ValueError("--native runs the network at the image size: --height / --width do not apply")
    network = NetworkSettings(backend_request(args), native=args.native, matching=local_matching(args),
                              min_confidence=args.min_confidence)
    settings = EvaluationSettings(network=network, scale=args.scale, sgbm=args.sgbm, picture=args.picture)
    pairs = evaluation_pairs(args.dataset, args.format, args.gt_scale, args.left, args.right, args.gt,
                             args.frames)
    report = evaluate(pairs, settings, verbose=args.verbose)
    print(json.dumps(report, indent=2, allow_nan=False) if args.json else format_table(report))
    return 0
