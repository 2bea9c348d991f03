"""Disparity metrics, one module for every caller (evaluate, demo, training logs, tests).

Dense convention: every metric is taken over ALL pixels with valid ground truth. A pixel the method
left without a prediction counts as an error: it is "bad" at every threshold and a D1 outlier, and
its end-point error is its ground-truth disparity (as if the method had answered 0). `epe_predicted`
and `bad2_predicted` are taken over the pixels that do have a prediction (what sparse methods and the
demo's live log report).

Depth edges (`depth_edges`): a valid pixel is on a depth edge when some valid pixel of its 3x3
neighbourhood has a ground-truth disparity differing by more than `EDGE_THRESHOLD_PX` (px at the
evaluated resolution). Both sides of a jump are edge pixels; smooth slants (and the 1-px quantisation
steps of 8-bit ground truth) are not. `edge_bad2` / `edge_epe` are the dense bad-2 and EPE over those
pixels: where thin structures and object outlines live, and where a blurred disparity loses.
"""
from __future__ import annotations

import numpy as np

# The numbers a report shows per method; `pixels`, `predicted_pixels`, `edge_pixels` are for pooling.
METRIC_KEYS = ("epe", "epe_predicted", "bad1", "bad2", "bad3", "d1", "density", "bad2_predicted",
               "edge_bad2", "edge_epe")
EDGE_THRESHOLD_PX = 2.0
# The 8 neighbour offsets (dy, dx) of the 3x3 neighbourhood.
_NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def depth_edges(gt: np.ndarray, valid: np.ndarray, threshold_px: float = EDGE_THRESHOLD_PX) -> np.ndarray:
    """(H,W) bool: valid pixels with a valid 8-neighbour whose ground truth differs by > threshold_px."""
    gt = np.asarray(gt, np.float64)
    valid = np.asarray(valid, bool)
    h, w = gt.shape
    edges = np.zeros((h, w), bool)
    for dy, dx in _NEIGHBOURS:
        # here: the pixels that have a neighbour at (dy, dx); there: those neighbours.
        here = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
        there = (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
        jump = valid[here] & valid[there] & (np.abs(gt[here] - gt[there]) > threshold_px)
        edges[here] |= jump
    return edges


def disparity_metrics(prediction: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray | None = None,
                      predicted: np.ndarray | None = None,
                      edge_threshold_px: float = EDGE_THRESHOLD_PX) -> dict[str, float]:
    """prediction, gt: (H,W) disparity in px. gt_valid: ground truth known (default: finite gt > 0).
    predicted: the method gave a value (default: finite prediction).

    Returns epe, epe_predicted (px), bad1/bad2/bad3 (% of valid pixels with error > 1/2/3 px),
    d1 (%, KITTI: error > 3 px and > 5 % of gt), density (% of valid pixels predicted), bad2_predicted
    (% of predicted valid pixels), edge_bad2 (%) and edge_epe (px) over depth-edge pixels (NaN where
    there is none), plus the pixel counts `pixels`, `predicted_pixels` and `edge_pixels` so that
    several pairs can be pooled (`pool_metrics`).
    """
    prediction = np.asarray(prediction, np.float64)
    gt = np.asarray(gt, np.float64)
    if prediction.shape != gt.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {gt.shape} differ in shape")
    valid = np.isfinite(gt) & (gt > 0) if gt_valid is None else (np.asarray(gt_valid, bool) & np.isfinite(gt))
    has = np.isfinite(prediction) if predicted is None else (np.asarray(predicted, bool) & np.isfinite(prediction))
    g = gt[valid]
    p_has = has[valid]
    error = np.where(p_has, np.abs(np.where(p_has, prediction[valid], 0.0) - g), np.abs(g))
    on_edge = depth_edges(np.where(valid, gt, 0.0), valid, edge_threshold_px)[valid]
    n, n_pred, n_edge = int(g.size), int(p_has.sum()), int(on_edge.sum())
    if n == 0:
        raise ValueError("no pixel has valid ground truth")

    def percent(bad: np.ndarray, of: int = n) -> float:
        return 100.0 * float(np.count_nonzero(bad)) / of if of else float("nan")

    bad2 = ~p_has | (error > 2.0)
    return {
        "epe": float(error.mean()),
        "epe_predicted": float(error[p_has].mean()) if n_pred else float("nan"),
        "bad1": percent(~p_has | (error > 1.0)),
        "bad2": percent(bad2),
        "bad3": percent(~p_has | (error > 3.0)),
        "d1": percent(~p_has | ((error > 3.0) & (error > 0.05 * np.abs(g)))),
        "density": 100.0 * n_pred / n,
        "bad2_predicted": percent(error[p_has] > 2.0, n_pred),
        "edge_bad2": percent(bad2[on_edge], n_edge),
        "edge_epe": float(error[on_edge].mean()) if n_edge else float("nan"),
        "pixels": n,
        "predicted_pixels": n_pred,
        "edge_pixels": n_edge,
    }


def _weighted(per_pair: list[dict[str, float]], key: str, weight: str) -> float:
    total = sum(m[weight] for m in per_pair)
    return sum(m[key] * m[weight] for m in per_pair if m[weight]) / total if total else float("nan")


def pool_metrics(per_pair: list[dict[str, float]]) -> dict[str, float]:
    """Metrics of several pairs as if all their pixels were one image (pixel-weighted means)."""
    if not per_pair:
        raise ValueError("no metrics to pool")
    pooled = {k: _weighted(per_pair, k, "pixels") for k in ("epe", "bad1", "bad2", "bad3", "d1", "density")}
    for key in ("epe_predicted", "bad2_predicted"):
        pooled[key] = _weighted(per_pair, key, "predicted_pixels")
    for key in ("edge_bad2", "edge_epe"):
        pooled[key] = _weighted(per_pair, key, "edge_pixels")
    for count in ("pixels", "predicted_pixels", "edge_pixels"):
        pooled[count] = sum(m[count] for m in per_pair)
    return pooled
