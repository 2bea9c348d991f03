"""Segment real photos into regions whose outlines follow the image's own edges.

Two steps: `superpixels` (once per photo, when a texture bank loads it) floods the colour image from a
grid of seeds with OpenCV's watershed, so superpixel borders sit on colour edges; `merge_superpixels`
(per sample, cheap) groups the superpixels of a crop into a few regions by k-means on their mean
colour and position, so regions are object-like: same-coloured neighbours end up together.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Superpixels:
    labels: np.ndarray  # (H, W) int32, 0..count-1
    colour_lab: np.ndarray  # (count, 3) float32 mean CIELAB colour (L in 0..100)
    centre_xy: np.ndarray  # (count, 2) float32 mean pixel position


def superpixels(image_rgb: np.ndarray, spacing_px: int = 16) -> Superpixels:
    """Watershed from seeds on a grid, each seed moved to the lowest gradient in its 5x5
    neighbourhood (so it does not start on an edge)."""
    height, width = image_rgb.shape[:2]
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gradient = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    markers = np.zeros((height, width), np.int32)
    label = 1
    for y in range(spacing_px // 2, height, spacing_px):
        for x in range(spacing_px // 2, width, spacing_px):
            y0, x0 = max(0, y - 2), max(0, x - 2)
            window = gradient[y0:y + 3, x0:x + 3]
            dy, dx = np.unravel_index(int(np.argmin(window)), window.shape)
            markers[y0 + dy, x0 + dx] = label
            label += 1
    cv2.watershed(bgr, markers)
    # watershed marks borders -1: give them a neighbouring label
    borders = markers < 1
    if borders.any():
        grown = cv2.dilate(markers.astype(np.float32), np.ones((3, 3), np.uint8))
        markers[borders] = grown[borders].astype(np.int32)
        markers[markers < 1] = 1
    labels = markers - 1
    count = int(labels.max()) + 1
    flat = labels.ravel()
    area = np.maximum(np.bincount(flat, minlength=count), 1).astype(np.float32)
    lab = cv2.cvtColor(image_rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB).reshape(-1, 3)
    colour = np.stack([np.bincount(flat, lab[:, i], count) for i in range(3)], 1) / area[:, None]
    ys, xs = np.mgrid[0:height, 0:width]
    centre = np.stack([np.bincount(flat, xs.ravel(), count), np.bincount(flat, ys.ravel(), count)], 1) / area[:, None]
    return Superpixels(labels, colour.astype(np.float32), centre.astype(np.float32))


def merge_superpixels(rng: np.random.Generator, features: np.ndarray, regions: int, iterations: int = 8) -> np.ndarray:
    """k-means (seeded from `rng`, unlike cv2.kmeans' global RNG) of superpixel feature rows into
    at most `regions` groups; returns the group of each row."""
    count = features.shape[0]
    regions = max(1, min(regions, count))
    centres = features[rng.choice(count, regions, replace=False)]
    assignment = np.zeros(count, np.int64)
    for _ in range(iterations):
        distance = ((features[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        assignment = np.argmin(distance, axis=1)
        for k in range(regions):
            members = assignment == k
            if members.any():
                centres[k] = features[members].mean(axis=0)
    return assignment
