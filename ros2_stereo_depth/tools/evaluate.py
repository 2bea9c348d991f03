"""`stereo-depth evaluate`: the network and OpenCV StereoSGBM on the same pairs, same resolution.

Both methods see each pair resized by --scale (INTER_AREA); the ground truth is resized by nearest
neighbour and its values multiplied by the same factor, so every number is in pixels at the
evaluated resolution. Metrics are dense (evaluation/metrics.py): a pixel without a prediction is an
error. `seconds` is the wall time per pair of each method alone (no file reading, no resizing).
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from ..config import ModelConfig
from ..evaluation.metrics import METRIC_KEYS, disparity_metrics, pool_metrics
from ..evaluation.sgbm import sgbm_disparity
from ..fileio import read_rgb
from ..normalisation import normalise
from ..pair import StereoPair
from ..model import StereoNet
from ..artifacts.weights import describe, load_model


def rescale_item(item: StereoPair, scale: float) -> StereoPair:
    """Images by INTER_AREA; ground truth by nearest neighbour, values times the actual width ratio
    (= scale up to the rounding of the size)."""
    if scale == 1.0:
        return item
    h, w = item.left.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))

    def resize(image: np.ndarray, mode: int) -> np.ndarray:
        return np.asarray(cv2.resize(image, size, interpolation=mode))

    left, right = resize(item.left, cv2.INTER_AREA), resize(item.right, cv2.INTER_AREA)
    if item.disparity_px is None or item.valid is None:
        return StereoPair(left, right, None, None)
    disparity = resize(item.disparity_px, cv2.INTER_NEAREST) * np.float32(size[0] / w)
    valid = resize(item.valid.astype(np.uint8), cv2.INTER_NEAREST) > 0
    return StereoPair(left, right, disparity, valid)


def search_range(config: ModelConfig, max_disparity: int | None, width: int) -> int:
    """--max-disparity (default: the config's) rounded up to the network's size multiple, but not
    beyond the padded input width (the cost volume cannot be wider than the image)."""
    m = config.size_multiple
    d = -(-int(max_disparity or config.max_disparity) // m) * m
    return min(d, -(-width // m) * m)


class ModelRunner:
    """The PyTorch network on any image size: pad right/bottom by edge replication to the size
    multiple, crop the output back. One network per search range (only the cost volume changes)."""

    def __init__(self, config_name: str | None, weights: str | None, min_confidence: float | None) -> None:
        self.min_confidence = min_confidence
        torch.manual_seed(0)  # without trained weights, at least the same random network every run
        self.base = load_model(config_name, weights)
        self.nets: dict[int, StereoNet] = {}

    def net(self, max_disparity: int) -> StereoNet:
        if max_disparity not in self.nets:
            # The weights do not depend on the search range: same tensors, other cost-volume size.
            net = StereoNet(self.base.config.with_overrides(max_disparity=max_disparity))
            net.load_state_dict(self.base.net.state_dict())
            self.nets[max_disparity] = net.eval()
        return self.nets[max_disparity]

    def __call__(self, left: np.ndarray, right: np.ndarray, max_disparity: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            return self._run(left, right, max_disparity)

    def _run(self, left: np.ndarray, right: np.ndarray, max_disparity: int) -> tuple[np.ndarray, np.ndarray]:
        net = self.net(max_disparity)
        h, w = left.shape[:2]
        m = net.config.size_multiple
        pad = (0, -w % m, 0, -h % m)
        x = [F.pad(torch.from_numpy(normalise(im)), pad, mode="replicate") for im in (left, right)]
        out = net(x[0], x[1])
        disparity = out["disparity"][0, 0, :h, :w].float().numpy()
        confidence = out["confidence"][0, 0, :h, :w].float().numpy()
        predicted = np.ones_like(disparity, bool) if self.min_confidence is None else confidence >= self.min_confidence
        return disparity, predicted


def pairs_from_args(args: argparse.Namespace) -> Iterator[tuple[str, StereoPair]]:
    if args.dataset:
        from ..data.readers import open_eval_dataset
        yield from open_eval_dataset(args.dataset, args.format, args.gt_scale)
        return
    if not (args.left and args.right and args.gt):
        raise ValueError("give --dataset DIR, or --left, --right and --gt")
    from ..data.readers import read_ground_truth
    disparity, valid = read_ground_truth(args.gt, args.gt_scale or 1.0)
    yield args.left, StereoPair(read_rgb(args.left), read_rgb(args.right), disparity, valid)


def evaluate(args: argparse.Namespace) -> dict[str, object]:
    runner = ModelRunner(args.config, args.weights, args.min_confidence)
    results: dict[str, list[dict[str, float]]] = {"model": [], "sgbm": []}
    seconds: dict[str, float] = {"model": 0.0, "sgbm": 0.0}
    sizes, ranges = set(), set()
    for name, item in pairs_from_args(args):
        if item.disparity_px is None:
            raise ValueError(f"{name}: no ground truth to evaluate against")
        item = rescale_item(item, args.scale)
        assert item.disparity_px is not None
        h, w = item.left.shape[:2]
        d = search_range(runner.base.config, args.max_disparity, w)
        sizes.add(f"{w}x{h}")
        ranges.add(d)
        for method in ("model", "sgbm"):
            started = time.perf_counter()
            if method == "model":
                disparity, predicted = runner(item.left, item.right, d)
            else:
                disparity, predicted = sgbm_disparity(item.left, item.right, d)
            seconds[method] += time.perf_counter() - started
            results[method].append(disparity_metrics(disparity, item.disparity_px, item.valid, predicted))
        if args.verbose:
            print(f"{name}: {w}x{h} model bad2 {results['model'][-1]['bad2']:.1f}% "
                  f"sgbm bad2 {results['sgbm'][-1]['bad2']:.1f}%")
    count = len(results["model"])
    if count == 0:
        raise ValueError("no stereo pairs found")
    report: dict[str, object] = {"scale": args.scale, "resolution": sorted(sizes), "pairs": count,
                                 "max_disparity": sorted(ranges), "weights": describe(runner.base)}
    for method in ("model", "sgbm"):
        pooled = pool_metrics(results[method])
        summary = {k: pooled[k] for k in METRIC_KEYS}
        summary["seconds"] = seconds[method] / count
        report[method] = summary
    return report


ROWS = (("epe", "EPE (px, dense)"), ("epe_predicted", "EPE (px, predicted only)"), ("bad1", "bad-1 (%)"),
        ("bad2", "bad-2 (%)"), ("bad3", "bad-3 (%)"), ("d1", "D1-all (%)"), ("density", "density (%)"),
        ("seconds", "seconds / pair"))


def format_table(report: dict[str, object]) -> str:
    lines = [f"{report['pairs']} pair(s) at scale {report['scale']} ({', '.join(report['resolution'])}), "  # type: ignore[arg-type]
             f"search range {', '.join(map(str, report['max_disparity']))} px; "  # type: ignore[call-overload]
             "dense metrics over all pixels with ground truth (no prediction = error)",
             f"model: {report['weights']}",
             f"{'metric':<26}{'model':>10}{'sgbm':>10}"]
    for key, label in ROWS:
        lines.append(f"{label:<26}{report['model'][key]:>10.3f}{report['sgbm'][key]:>10.3f}")  # type: ignore[index]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="network config (default: the weights' sidecar, else fast)")
    parser.add_argument("--weights", help="safetensors weights (default: shipped weights of --config)")
    parser.add_argument("--dataset", help="dataset directory (see data/readers.py)")
    parser.add_argument("--format", default="auto", help="dataset format; auto-detected by layout by default")
    parser.add_argument("--left", help="left image of a single pair")
    parser.add_argument("--right", help="right image of a single pair")
    parser.add_argument("--gt", help="ground-truth disparity of the left image (PNG or PFM)")
    parser.add_argument("--gt-scale", type=float, default=None,
                        help="8-bit PNG ground truth: disparity = value / this (Middlebury 2005/06: 1 full, 2 half, "
                             "3 third size; default 1 for --gt, guessed from the width for a middlebury2006 dataset)")
    parser.add_argument("--max-disparity", type=int, help="search range at the evaluated resolution (default: the config's)")
    parser.add_argument("--scale", type=float, default=0.5, help="resize factor for images and ground truth (default 0.5)")
    parser.add_argument("--min-confidence", type=float,
                        help="model pixels with confidence below this count as not predicted (default: all predicted)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--verbose", action="store_true", help="one line per pair")


def run(args: argparse.Namespace) -> int:
    if args.scale <= 0:
        raise ValueError("--scale must be positive")
    if args.config is None and args.weights is None:
        args.config = "fast"
    if args.threads:
        torch.set_num_threads(args.threads)
    report = evaluate(args)
    if args.json:
        # NaN (e.g. epe_predicted with nothing predicted) is not JSON: write null.
        for method in ("model", "sgbm"):
            report[method] = {k: (None if v != v else v) for k, v in report[method].items()}  # type: ignore[attr-defined]
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        print(format_table(report))
    return 0
