"""`stereo-depth infer`: disparity (and optionally a point cloud) from two image files."""
from __future__ import annotations

import argparse

import numpy as np

from ..fileio import read_rgb, write_disparity, write_ply
from ..geometry import StereoCamera
from ..inference.base import infer_at_image_size
from ..inference.select import BACKENDS, BackendRequest, create_backend


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--left", required=True)
    parser.add_argument("--right", required=True)
    parser.add_argument("--out", required=True, help="disparity output: .pfm, .npy or .png (colour map)")
    parser.add_argument("--config", default="fast")
    parser.add_argument("--weights", help="safetensors weights (default: shipped weights of --config)")
    parser.add_argument("--height", type=int, help="network input height (default: the config's)")
    parser.add_argument("--width", type=int, help="network input width (default: the config's)")
    parser.add_argument("--max-disparity", type=int)
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="auto prefers a valid TensorRT engine, then ONNX Runtime")
    parser.add_argument("--engine", default="", help="TensorRT engine (default: $ROS_HOME/stereo_depth/engines/<config>_<W>x<H>_d<D>_<precision>.engine)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                        help="engine precision; torch on CUDA: fp16 autocast unless fp32")
    parser.add_argument("--ply", help="also write a PLY point cloud (needs --fx and --baseline)")
    parser.add_argument("--fx", type=float, help="focal length in pixels of the input images")
    parser.add_argument("--cx", type=float, help="principal point x (default: image centre)")
    parser.add_argument("--cy", type=float, help="principal point y (default: image centre)")
    parser.add_argument("--baseline", type=float, help="stereo baseline in metres")


def run(args: argparse.Namespace) -> int:
    if args.ply and not (args.fx and args.baseline):
        raise ValueError("--ply needs --fx (pixels) and --baseline (metres)")
    selected = create_backend(BackendRequest(
        backend=args.backend, config=args.config, weights=args.weights or "", height=args.height or 0,
        width=args.width or 0, max_disparity=args.max_disparity or 0, engine_path=args.engine,
        precision=args.precision))
    print(selected.describe())
    backend = selected.backend
    left, right = read_rgb(args.left), read_rgb(args.right)
    disparity = infer_at_image_size(backend, left, right).disparity_px
    write_disparity(args.out, disparity)
    print(f"wrote {args.out}: disparity {np.nanmin(disparity):.2f}..{np.nanmax(disparity):.2f} px")
    if args.ply:
        h, w = disparity.shape
        camera = StereoCamera(args.fx, args.fx, args.cx if args.cx is not None else (w - 1) / 2,
                              args.cy if args.cy is not None else (h - 1) / 2, args.baseline, w, h)
        count = write_ply(args.ply, camera.points_from_disparity(disparity), left)
        print(f"wrote {args.ply}: {count} points")
    return 0
