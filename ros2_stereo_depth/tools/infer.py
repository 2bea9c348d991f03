"""`stereo-depth infer`: disparity (and optionally a point cloud) from two image files."""
from __future__ import annotations

import argparse

import numpy as np

from ..fileio import read_rgb, write_disparity, write_ply
from ..geometry import StereoCamera
from ..inference.base import infer_at_image_size
from ..inference.select import create_backend
from .args import add_backend_arguments, add_matching_arguments, add_model_arguments, backend_request, local_matching


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--left", required=True)
    parser.add_argument("--right", required=True)
    parser.add_argument("--out", required=True, help="disparity output: .pfm, .npy or .png (colour map)")
    add_model_arguments(parser)
    add_backend_arguments(parser, default="torch")
    add_matching_arguments(parser)
    parser.add_argument("--ply", help="also write a PLY point cloud (needs --fx and --baseline)")
    parser.add_argument("--fx", type=float, help="focal length in pixels of the input images")
    parser.add_argument("--cx", type=float, help="principal point x (default: image centre)")
    parser.add_argument("--cy", type=float, help="principal point y (default: image centre)")
    parser.add_argument("--baseline", type=float, help="stereo baseline in metres")


def run(args: argparse.Namespace) -> int:
    if args.ply and not (args.fx and args.baseline):
        raise ValueError("--ply needs --fx (pixels) and --baseline (metres)")
    selected = create_backend(backend_request(args))
    print(selected.describe())
    backend = selected.backend
    left, right = read_rgb(args.left), read_rgb(args.right)
    disparity = infer_at_image_size(backend, left, right, local_matching(args)).disparity_px
    write_disparity(args.out, disparity)
    print(f"wrote {args.out}: disparity {np.nanmin(disparity):.2f}..{np.nanmax(disparity):.2f} px")
    if args.ply:
        h, w = disparity.shape
        camera = StereoCamera(args.fx, args.fx, args.cx if args.cx is not None else (w - 1) / 2,
                              args.cy if args.cy is not None else (h - 1) / 2, args.baseline, w, h)
        count = write_ply(args.ply, camera.points_from_disparity(disparity), left)
        print(f"wrote {args.ply}: {count} points")
    return 0
