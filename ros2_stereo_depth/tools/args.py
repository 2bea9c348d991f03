"""Argument groups shared by the `stereo-depth` tools, and their conversion to library calls.

Defaults come from config.py (run-time settings of the registry entry), never from here: an omitted
option is None and the library fills in the config's value.
"""
from __future__ import annotations

import argparse

from ..artifacts.weights import LoadedModel, load_model
from ..config import CONFIGS, ENGINE_PRECISIONS
from ..inference.local_matching import MAX_MATCH_WIDTH_PX, MAX_RADIUS_PX, LocalMatching
from ..inference.select import BACKENDS, BackendRequest


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which network, at which static input size and search range."""
    group = parser.add_argument_group("model")
    group.add_argument("--config", default="fast", choices=sorted(CONFIGS), help="network config")
    group.add_argument("--weights", help="safetensors weights (default: the shipped weights of --config)")
    group.add_argument("--height", type=int, help="network input height (default: the config's)")
    group.add_argument("--width", type=int, help="network input width (default: the config's)")
    group.add_argument("--max-disparity", type=int,
                       help="disparities searched at the network input resolution (default: the config's)")


def load_model_from_args(args: argparse.Namespace) -> LoadedModel:
    """The network at the asked input size and search range (None: the config's), checked together."""
    return load_model(args.config, args.weights, args.max_disparity, height=args.height, width=args.width)


def input_size(args: argparse.Namespace, model: LoadedModel) -> tuple[int, int]:
    """(height, width) asked for, else the config's; checked against the network's size rules."""
    height, width = args.height or model.config.height, args.width or model.config.width
    model.config.check_size(height, width)
    return height, width


def add_backend_arguments(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """Which inference backend (create_backend) and its engine options."""
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS, default=default,
                       help="auto prefers a valid TensorRT engine, then ONNX Runtime")
    group.add_argument("--engine", default="", help="TensorRT engine (default: "
                       "$ROS_HOME/stereo_depth/engines/<config>_<W>x<H>_d<D>_<precision>.engine)")
    group.add_argument("--precision", choices=ENGINE_PRECISIONS, default="fp16",
                       help="engine precision; torch on CUDA: fp16 autocast unless fp32")
    group.add_argument("--threads", type=int, default=0, help="CPU threads (0: the library default)")


def backend_request(args: argparse.Namespace) -> BackendRequest:
    """The request for the model and backend arguments above."""
    return BackendRequest(backend=args.backend, config=args.config, weights=args.weights or "",
                          height=args.height or 0, width=args.width or 0, max_disparity=args.max_disparity or 0,
                          engine_path=args.engine, precision=args.precision, threads=args.threads)


def add_matching_arguments(parser: argparse.ArgumentParser) -> None:
    """The local matching after the network (the node's match_* parameters, same defaults)."""
    group = parser.add_argument_group("local matching (inference/local_matching.py)")
    default = LocalMatching()
    group.add_argument("--match-radius", type=int, default=default.radius_px,
                       help=f"+- px searched around the network's disparity at the network input's width and "
                            f"the image's aspect ratio, 0 to "
                            f"{MAX_RADIUS_PX} (default {default.radius_px}, as the node; 0: the network alone)")
    group.add_argument("--match-camera-radius", type=int, default=default.camera_radius_px,
                       help="+- px searched then at the image resolution when it is larger than that "
                            f"(default {default.camera_radius_px}, as the node; 0: off)")
    group.add_argument("--match-sgbm", action=argparse.BooleanOptionalAction, default=default.sgbm,
                       help="fuse OpenCV SGBM's trusted matches at the first matching level (default on, as the "
                            "node's match_sgbm)")
    group.add_argument("--match-width", type=int, default=default.width_px,
                       help=f"width (px) of the first matching level, at the image's aspect ratio, 0 to {MAX_MATCH_WIDTH_PX} "
                            "(default 0: the network input's width, or a 2.5th of the image's if wider, as the node's "
                            "match_width_px)")
    group.add_argument("--match-edges", action=argparse.BooleanOptionalAction, default=default.edges,
                       help="last, at the image resolution, move the pixels beside depth edges to the side that "
                            "matches them better (default on, as the node's match_edges)")


def local_matching(args: argparse.Namespace) -> LocalMatching:
    """The matching options, with the backend's --threads (as the node's `threads` parameter)."""
    return LocalMatching(args.match_radius, args.match_camera_radius, args.threads, args.match_sgbm, args.match_width,
                         args.match_edges)
