"""What every inference backend shares: the backend interface, results, the resize policy, and the rule
that says which output pixels are valid (the node and `evaluate` both apply it)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .disparity_resize import resize_disparity
from .local_matching import NO_MATCHING, LocalMatching


@dataclass
class StereoResult:
    disparity_px: np.ndarray  # (H,W) float32 at the network input size (infer_at_image_size: the images')
    confidence: np.ndarray  # (H,W) float32 in [0,1]
    matching_s: float = 0.0  # infer_at_image_size: seconds spent in the local matching (for the bench)


class StereoBackend(Protocol):
    name: str
    device: str
    height: int
    width: int
    max_disparity: int

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        """(H,W,3) uint8 RGB at exactly (height, width) -> disparity and confidence."""
        ...


def resize_to_input(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """An image at the network input size, as inference sees it (INTER_AREA when shrinking: no aliasing)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    interp = cv2.INTER_AREA if image.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def infer_at_image_size(backend: StereoBackend, left_rgb: np.ndarray, right_rgb: np.ndarray,
                        matching: LocalMatching = NO_MATCHING) -> StereoResult:
    """Any-size pair -> disparity (px of these images) and confidence at their size: what the node publishes.

    The images are resized to level 1's size and to the network input (INTER_AREA when shrinking: no
    aliasing), and the result back; disparity is a horizontal length, so it also scales by the width
    ratio. `matching` re-matches the network's answer locally (inference/local_matching.py): level 1 at
    `matching.first_level_size` (the network input's width, the images' aspect ratio),
    when the images are larger than that, level 2 at theirs, and the edge sides at theirs; the node
    passes its match_* parameters,
    NO_MATCHING gives the network alone."""
    h, w = left_rgb.shape[:2]
    if right_rgb.shape != left_rgb.shape:
        raise ValueError(f"left image is {w}x{h}, right is {right_rgb.shape[1]}x{right_rgb.shape[0]}")
    network_wh = (backend.width, backend.height)
    level_wh = matching.first_level_size((w, h), network_wh)
    level_left, level_right = resize_to_input(left_rgb, *level_wh), resize_to_input(right_rgb, *level_wh)
    # The network's input from the level-1 images when they are at least as large (the same pixels, shrunk
    # once more: Aloe bad-2 within 0.05 points), which saves shrinking the camera images twice (641x555
    # pair, tiny: 3 ms; 1282x1110, fast: 8 ms).
    larger = level_wh[0] >= network_wh[0] and level_wh[1] >= network_wh[1]
    source_left, source_right = (level_left, level_right) if larger else (left_rgb, right_rgb)
    result = backend.infer(resize_to_input(source_left, *network_wh), resize_to_input(source_right, *network_wh))
    confidence = result.confidence if (w, h) == network_wh else cv2.resize(result.confidence, (w, h),
                                                                          interpolation=cv2.INTER_LINEAR)
    started = time.perf_counter()
    disparity = matching.at_first_level(level_left, level_right, resize_disparity(result.disparity_px, *level_wh))
    if level_wh != (w, h):
        disparity = matching.at_camera(left_rgb, right_rgb, level_left, disparity)
    disparity = matching.at_edges(left_rgb, right_rgb, disparity)
    return StereoResult(disparity, confidence, time.perf_counter() - started)


def valid_disparity(disparity_px: np.ndarray, confidence: np.ndarray, min_disparity: float,
                    min_confidence: float) -> np.ndarray:
    """The node's validity rule (parameters min_disparity, min_confidence): a pixel is valid when its
    disparity is above min_disparity (NaN is not) and, when min_confidence > 0, its confidence is at least
    min_confidence. Returns a bool mask of the disparity's shape."""
    valid = disparity_px > min_disparity  # NaN compares False
    if min_confidence > 0:
        valid &= confidence >= min_confidence
    return np.asarray(valid)
