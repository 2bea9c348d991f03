"""`stereo-depth bench`: the one source of speed figures (evaluation/bench_report.py does the work).

Per camera size, config and backend: the node's stage times, inference against OpenCV SGBM on the same
frames, the node end to end over DDS, peak RSS; the Aloe accuracy-per-millisecond chart; issue 11's
targets met or not. Prints Markdown (for BENCHMARKS.md); --json and --chart write the raw numbers and PNG.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not WIDTHxHEIGHT") from None
    return width, height


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", default=["fast", "tiny"])
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch", "tensorrt"],
                        help="any of tensorrt onnxruntime torch (unavailable ones are reported as skipped)")
    parser.add_argument("--sizes", nargs="+", type=size, default=[(640, 480), (1280, 720)],
                        help="camera sizes WxH of the published frames")
    parser.add_argument("--input", type=size, default=None, help="network input WxH (default: each config's)")
    parser.add_argument("--threads", type=int, default=0, help="inference CPU threads (0: library default)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--e2e-backends", nargs="*", default=["onnxruntime"],
                        help="backends also run end to end through DDS (none: skip)")
    parser.add_argument("--e2e-frames", type=int, default=20, help="frames sent per end-to-end run")
    parser.add_argument("--no-overload", action="store_true", help="skip the end-to-end run at 2x capacity")
    parser.add_argument("--no-publish", action="store_true", help="skip the publish stage (no sink process)")
    parser.add_argument("--chart-sizes", nargs="*", type=size, default=[(320, 256), (480, 352), (640, 480)],
                        help="network input sizes of the Aloe accuracy-vs-time points (none: skip)")
    parser.add_argument("--presets", nargs="*", default=[], metavar="PARAMS_FILE",
                        help="node parameters files benched as configs of their own (e.g. config/stereo_depth_cpu.yaml): "
                             "stage rows with the file's settings, the node run with --params-file, and a chart point")
    parser.add_argument("--chart", default="", help="write the accuracy-vs-milliseconds PNG here")
    parser.add_argument("--json", default="", help="also write the raw numbers to this file")
    parser.add_argument("--ort-study", nargs="*", type=size, metavar="WxH",
                        help="instead: ONNX Runtime session options, int8 quantisation and profile of the first "
                             "--configs at these network input sizes (default 640x480 320x256)")
    parser.add_argument("--rounds", type=int, default=10, help="--ort-study: interleaved runs per variant")


def run(args: argparse.Namespace) -> int:
    if args.ort_study is not None:
        return run_ort_study(args)
    from ..evaluation.dds_latency import ros_environment
    ros_environment()  # ros/environment.py's defaults and DDS profile, before anything imports rclpy
    from ..evaluation.bench_report import BenchOptions, markdown, run_bench

    options = BenchOptions(configs=args.configs, backends=args.backends, camera_sizes=args.sizes,
                           input_size=args.input, threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                           publish=not args.no_publish, e2e_backends=args.e2e_backends, e2e_frames=args.e2e_frames,
                           overload=not args.no_overload, chart_sizes=args.chart_sizes, presets=args.presets)
    report = run_bench(options, args.chart or None)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def run_ort_study(args: argparse.Namespace) -> int:
    from ..evaluation.ort_study import markdown, study

    sizes = args.ort_study or [(640, 480), (320, 256)]
    report = study(args.configs[0], sizes, args.rounds, profile_size=sizes[0])
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
