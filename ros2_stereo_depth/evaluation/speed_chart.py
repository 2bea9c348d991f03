"""Accuracy per millisecond: our configs and OpenCV SGBM on the Middlebury Aloe pair at several input
sizes, and the PNG chart of dense bad-2 against time.

Protocol (README *Accuracy*): Aloe at half size (641x555) with its ground truth, dense metrics from
evaluation/metrics.py. A method "at WxH" gets the pair resized to WxH (INTER_AREA) and its disparity
is brought back to 641x555 and scaled by the width ratio, as the node does for a camera whose images
are not the network's input size (inference/base.py `infer_at_image_size`); so every size is scored
against the same ground truth, and the time is that of the method at WxH alone (for our configs: the
node's call on the 641x555 pair, its resize to WxH included). A config appears twice: the network alone,
and with the local matching (`+ matching`: the node's first matching level and SGBM fusion, at the network
input's width and the image's aspect ratio; the second level, at the camera resolution, is left out so
that the time covers all that the accuracy does).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..inference.base import StereoBackend, infer_at_image_size
from ..inference.local_matching import LocalMatching
from .metrics import disparity_metrics
from ..inference.sgbm import sgbm_disparity, sgbm_filled
from .speed import time_interleaved

ALOE_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
ALOE_SCALE = 0.5  # the README's protocol: 641x555, disparities 21..105 px


def load_aloe(directory: Path = ALOE_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Aloe at half size: left, right RGB, ground-truth disparity px (0 where unknown) and its validity."""
    from ..data.readers import read_ground_truth
    from ..fileio import read_rgb

    left, right = read_rgb(directory / "aloeL.jpg"), read_rgb(directory / "aloeR.jpg")
    gt, valid = read_ground_truth(directory / "aloeGT.png", 1.0)
    h, w = left.shape[:2]
    size = (round(w * ALOE_SCALE), round(h * ALOE_SCALE))
    half = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (left, right)]
    gt_half = cv2.resize(gt, size, interpolation=cv2.INTER_NEAREST) * np.float32(size[0] / w)
    valid_half = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return half[0], half[1], gt_half, valid_half


def dense_bad2(disparity_px: np.ndarray, predicted: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """The evaluation protocol's one number: % of ground-truth pixels off by > 2 px or not predicted."""
    return disparity_metrics(disparity_px, gt, valid, predicted)["bad2"]


def sgbm_at(left: np.ndarray, right: np.ndarray, size: tuple[int, int], max_disparity: int,
            filled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SGBM (holes filled or not) at `size`, its disparity (NaN = none) brought back to the pair's size and scale."""
    h, w = left.shape[:2]
    small = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (left, right)]
    disparity, predicted = (sgbm_filled if filled else sgbm_disparity)(small[0], small[1], max_disparity)
    back = cv2.resize(np.nan_to_num(disparity, nan=-1.0), (w, h), interpolation=cv2.INTER_NEAREST) * np.float32(w / size[0])
    has = cv2.resize(predicted.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return back, has


SGBM = "OpenCV SGBM"
SGBM_FILLED = "OpenCV SGBM, holes filled"


Method = tuple[StereoBackend | None, int, LocalMatching]  # backend (None: SGBM or SGBM_FILLED by name), search range, matching


def with_matching_at_input(radius_px: int) -> LocalMatching:
    """The local matching at the method's input size only, with the node's SGBM fusion and edge sides (see
    the module docstring)."""
    return LocalMatching(radius_px, 0)


def accuracy_at_size(methods: dict[str, Method], size: tuple[int, int], repeats: int,
                     aloe: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Dense bad-2 on Aloe of each method (name -> Method) run at `size`, and its time at `size` on the
    same resized pair, all methods timed interleaved."""
    left, right, gt, valid = aloe
    small = [cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (left, right)]
    fns: dict[str, Any] = {}
    points: dict[str, dict[str, Any]] = {}
    for name, (backend, max_disparity, matching) in methods.items():
        if backend is None:
            filled = name == SGBM_FILLED
            disparity, predicted = sgbm_at(left, right, size, max_disparity, filled)
            fns[name] = lambda l, r, d=max_disparity, f=filled: (sgbm_filled if f else sgbm_disparity)(l, r, d)
        else:
            if matching.camera_radius_px:
                raise ValueError("the chart times a method at its input size only: camera_radius_px must be 0")
            disparity = infer_at_image_size(backend, left, right, matching).disparity_px
            predicted = np.ones(gt.shape, bool)
            # Timed on the 641x555 pair, as scored: the first matching level runs at the image's aspect
            # ratio (inference/local_matching.py first_level_size), not at WxH.
            fns[name] = lambda _l, _r, b=backend, m=matching: infer_at_image_size(b, left, right, m)
        points[name] = {"size": f"{size[0]}x{size[1]}", "max_disparity": max_disparity,
                        "bad2": dense_bad2(disparity, predicted, gt, valid)}
    for name, timing in time_interleaved(fns, [(small[0], small[1])], repeats, 1).items():
        points[name].update(p50_ms=timing["p50_ms"], mean_ms=timing["mean_ms"])
    return points


COLOURS = [(40, 40, 200), (60, 60, 120), (200, 120, 20), (30, 150, 30), (150, 40, 150), (20, 140, 200),
           (20, 20, 20)]  # BGR


def draw_chart(series: dict[str, list[dict[str, Any]]], path: str | Path, title: str) -> None:
    """bad-2 (%) against milliseconds (log scale), one polyline per method, points labelled by size."""
    width, height, margin = 900, 600, 80
    points = [p for values in series.values() for p in values]
    ms = np.array([p["p50_ms"] for p in points])
    bad = np.array([p["bad2"] for p in points])
    x_lo, x_hi = np.log10(ms.min() / 1.5), np.log10(ms.max() * 1.5)
    y_lo, y_hi = 0.0, float(np.ceil(bad.max() / 10.0) * 10.0 + 5.0)
    canvas = np.full((height, width, 3), 255, np.uint8)

    def xy(p: dict[str, Any]) -> tuple[int, int]:
        x = margin + (np.log10(p["p50_ms"]) - x_lo) / (x_hi - x_lo) * (width - 2 * margin)
        y = height - margin - (p["bad2"] - y_lo) / (y_hi - y_lo) * (height - 2 * margin)
        return int(x), int(y)

    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.rectangle(canvas, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    for decade in range(int(np.floor(x_lo)), int(np.ceil(x_hi)) + 1):
        for mult in (1, 2, 5):
            value = mult * 10.0 ** decade
            if x_lo <= np.log10(value) <= x_hi:
                x, _ = xy({"p50_ms": value, "bad2": 0.0})
                cv2.line(canvas, (x, margin), (x, height - margin), (220, 220, 220), 1)
                cv2.putText(canvas, f"{value:g}", (x - 12, height - margin + 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for value in np.arange(y_lo, y_hi + 1e-6, 10.0):
        _, y = xy({"p50_ms": 10 ** x_lo, "bad2": value})
        cv2.line(canvas, (margin, y), (width - margin, y), (220, 220, 220), 1)
        cv2.putText(canvas, f"{value:g}", (margin - 35, y + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "milliseconds per frame at the input size (log scale, median, this machine)",
                (margin, height - 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "dense bad-2 % on Aloe (lower is better)", (10, margin - 15), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, title, (margin, 30), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    legend_x = width - margin - 10 - max(cv2.getTextSize(name, font, 0.55, 2)[0][0] for name in series)
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        ordered = sorted(values, key=lambda p: p["p50_ms"])
        pixels = [xy(p) for p in ordered]
        for a, b in zip(pixels, pixels[1:]):
            cv2.line(canvas, a, b, colour, 2, cv2.LINE_AA)
        for p, (x, y) in zip(ordered, pixels):
            cv2.circle(canvas, (x, y), 5, colour, -1, cv2.LINE_AA)
            cv2.putText(canvas, p.get("label", p["size"]), (x + 7, y - 7), font, 0.4, colour, 1, cv2.LINE_AA)
        cv2.putText(canvas, name, (legend_x, margin + 25 + 22 * i), font, 0.55, colour, 2, cv2.LINE_AA)
    if not cv2.imwrite(str(path), canvas):
        raise RuntimeError(f"{path}: could not write the chart")
