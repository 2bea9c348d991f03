"""`stereo-depth bench`: latency and memory of the inference backends, against OpenCV SGBM in the same run.

The machine may be noisy, so absolute times say little; the ratio to SGBM measured in the same run,
on the same pair at the same size, is the figure to compare across machines. Writes a Markdown table
(for BENCHMARKS.md) and, with --json, the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import cv2
import numpy as np

from ..data.synthetic import SceneParams, SyntheticSequence
from ..evaluation.sgbm import sgbm_disparity
from ..inference.select import BackendRequest, create_backend


def time_call(fn, repeats: int, warmup: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    ms = np.asarray(samples) * 1e3
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "fps": float(1e3 / ms.mean())}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(args: argparse.Namespace) -> dict[str, object]:
    width, height = args.width, args.height
    frame = SyntheticSequence(SceneParams(height, width, float(args.max_disparity) * 0.9), seed=3).frame(0)
    left, right = frame.left, frame.right
    rows: list[dict[str, object]] = []
    sgbm = time_call(lambda: sgbm_disparity(left, right, args.max_disparity), args.repeats, 1)
    rows.append({"method": f"OpenCV SGBM (3-way, {args.max_disparity} px)", "device": "cpu", **sgbm})
    for name in args.backends:
        request = BackendRequest(backend=name, config=args.config, height=height, width=width,
                                 max_disparity=args.max_disparity, threads=args.threads)
        try:
            selected = create_backend(request)
        except (RuntimeError, ValueError, FileNotFoundError) as error:
            rows.append({"method": name, "skipped": str(error)})
            continue
        backend = selected.backend
        stats = time_call(lambda: backend.infer(left, right), args.repeats, args.warmup)
        rows.append({"method": f"{args.config} on {backend.name}", "device": backend.device, **stats,
                     "x_sgbm_time": stats["mean_ms"] / sgbm["mean_ms"], "peak_rss_mib": peak_rss_mib()})
    return {"size": f"{width}x{height}", "max_disparity": args.max_disparity, "repeats": args.repeats,
            "machine": f"{platform.machine()}, {cv2.getNumberOfCPUs()} CPUs", "rows": rows}


def markdown(report: dict[str, object]) -> str:
    lines = [f"Input {report['size']}, {report['max_disparity']} disparities, {report['repeats']} runs, "
             f"{report['machine']}.", "",
             "| method | device | mean ms | p95 ms | fps | time vs SGBM | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:  # type: ignore[attr-defined]
        if "skipped" in row:
            reason = " ".join(str(row["skipped"]).split()).replace("|", "/")  # one table cell
            lines.append(f"| {row['method']} | skipped: {reason} | | | | | |")
            continue
        ratio = f"{row['x_sgbm_time']:.1f}x" if "x_sgbm_time" in row else "1x"
        rss = f"{row['peak_rss_mib']:.0f}" if "peak_rss_mib" in row else ""
        lines.append(f"| {row['method']} | {row['device']} | {row['mean_ms']:.1f} | {row['p95_ms']:.1f} | "
                     f"{row['fps']:.1f} | {ratio} | {rss} |")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="fast")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--max-disparity", type=int, default=128)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "torch"],
                        help="any of tensorrt onnxruntime torch (unavailable ones are reported as skipped)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", help="also write the raw numbers to this file")


def run(args: argparse.Namespace) -> int:
    report = bench(args)
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0
