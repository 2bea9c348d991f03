"""Disparity metrics, one function for every caller (evaluate, tests, training logs).

Dense convention: every metric is taken over ALL pixels with valid ground truth. A pixel the method
left without a prediction counts as an error: it is "bad" at every threshold and a D1 outlier, and
its end-point error is its ground-truth disparity (as if the method had answered 0). `epe_predicted`
is the EPE over the pixels that do have a prediction (what sparse methods usually report).
"""
from __future__ import annotations

import numpy as np

METRIC_KEYS = ("epe", "epe_predicted", "bad1", "bad2", "bad3", "d1", "density")


def disparity_metrics(prediction: np.ndarray, gt: np.ndarray, gt_valid: np.ndarray | None = None,
                      predicted: np.ndarray | None = None) -> dict[str, float]:
    """prediction, gt: (H,W) disparity in px. gt_valid: ground truth known (default: finite gt > 0).
    predicted: the method gave a value (default: finite prediction).

    Returns epe, epe_predicted (px), bad1/bad2/bad3 (% of valid pixels with error > 1/2/3 px),
    d1 (%, KITTI: error > 3 px and > 5 % of gt), density (% of valid pixels predicted), plus the pixel
    counts `pixels` and `predicted_pixels` so that several pairs can be pooled (`pool_metrics`).
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
    n, n_pred = int(g.size), int(p_has.sum())
    if n == 0:
        raise ValueError("no pixel has valid ground truth")

    def percent(bad: np.ndarray) -> float:
        return 100.0 * float(np.count_nonzero(bad)) / n

    return {
        "epe": float(error.mean()),
        "epe_predicted": float(error[p_has].mean()) if n_pred else float("nan"),
        "bad1": percent(~p_has | (error > 1.0)),
        "bad2": percent(~p_has | (error > 2.0)),
        "bad3": percent(~p_has | (error > 3.0)),
        "d1": percent(~p_has | ((error > 3.0) & (error > 0.05 * np.abs(g)))),
        "density": 100.0 * n_pred / n,
        "pixels": n,
        "predicted_pixels": n_pred,
    }


def pool_metrics(per_pair: list[dict[str, float]]) -> dict[str, float]:
    """Metrics of several pairs as if all their pixels were one image (pixel-weighted means)."""
    if not per_pair:
        raise ValueError("no metrics to pool")
    n = sum(m["pixels"] for m in per_pair)
    n_pred = sum(m["predicted_pixels"] for m in per_pair)
    pooled = {k: sum(m[k] * m["pixels"] for m in per_pair) / n
              for k in ("epe", "bad1", "bad2", "bad3", "d1", "density")}
    pooled["epe_predicted"] = (sum(m["epe_predicted"] * m["predicted_pixels"] for m in per_pair if m["predicted_pixels"])
                               / n_pred) if n_pred else float("nan")
    pooled["pixels"], pooled["predicted_pixels"] = n, n_pred
    return pooled
