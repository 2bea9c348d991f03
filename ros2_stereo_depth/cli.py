"""`stereo-depth <command>`: one entry point for every tool (also `python -m ros2_stereo_depth`)."""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module under ros2_stereo_depth.tools, one-line help)
COMMANDS = {
    "export": ("export", "export weights to a static-shape ONNX model with a JSON sidecar"),
    "infer": ("infer", "run the network on a stereo pair of image files"),
    "build-engine": ("build_engine", "export, check and build a TensorRT engine with a JSON sidecar"),
    "train": ("train", "train the network on synthetic data or a dataset (supervised or self-supervised)"),
    "evaluate": ("evaluate", "score the network and OpenCV StereoSGBM against ground truth (EPE, bad-N, D1)"),
    "bench": ("bench", "time the inference backends against OpenCV SGBM on the same pair"),
    "demo": ("demo", "run the node on the built-in synthetic stereo sequence and write demo_output/"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All subcommands are listed; only `command`'s module is imported (they import torch, rclpy...)."""
    parser = argparse.ArgumentParser(prog="stereo-depth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(f"ros2_stereo_depth.tools.{module_name}")
            module.add_arguments(p)
            p.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"stereo-depth {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
