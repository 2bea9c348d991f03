"""The network side of an evaluation, through the same backends and resize policy as the node.

Node path (default): one backend at the network input size the node uses (the config's unless given),
`infer_at_image_size` resizes each pair to it, runs the network and the local matching and brings the
result back: exactly the disparity the node publishes for a camera of that resolution. Native path
(`native=True`): a backend at the image's own size padded up to the network's size multiple (edge
replication, right/bottom), output cropped back, then the local matching's first level at that size.
`matching` is the node's match_* parameters (default: the node's defaults; NO_MATCHING: the network alone).

A pixel counts as predicted by the node's own rule (inference/base.py valid_disparity; the node's default
parameters min_disparity 0.0, min_confidence 0.0).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..config import get_config
from ..inference.base import StereoBackend, StereoResult, infer_at_image_size, valid_disparity
from ..inference.local_matching import LocalMatching
from ..inference.select import BackendRequest, SelectedBackend, create_backend


@dataclass(frozen=True)
class NetworkSettings:
    # Which backend and network, as the node's parameters; height/width: the node path's network input
    # size (0: the config's, as the node); max_disparity: at the network input (node path) or image
    # (native) resolution (0: the config's). auto = ONNX Runtime without TensorRT.
    request: BackendRequest = field(default_factory=BackendRequest)
    native: bool = False
    matching: LocalMatching = LocalMatching()  # the node's defaults (frozen: a shared default is safe)
    min_disparity: float = 0.0  # the node's defaults
    min_confidence: float = 0.0


class NetworkRunner:
    """(left, right) any size -> (disparity px at that size, predicted mask), one backend per input size."""

    def __init__(self, settings: NetworkSettings) -> None:
        self.settings = settings
        self.selected: dict[tuple[int, int], SelectedBackend] = {}

    def backend_for(self, height: int, width: int) -> SelectedBackend:
        request = self.settings.request
        if self.settings.native:
            m = get_config(request.config).size_multiple
            request = replace(request, height=-(-height // m) * m, width=-(-width // m) * m)
        size = (request.height, request.width)
        if size not in self.selected:
            self.selected[size] = create_backend(request)
        return self.selected[size]

    def search_range_px(self, height: int, width: int) -> float:
        """The disparities the network searches, in px of an image of this size."""
        selected = self.backend_for(height, width)
        b = selected.backend
        d = b.max_disparity or selected.weights.config.max_disparity
        return float(d) if self.settings.native else d * width / b.width

    def __call__(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = left_rgb.shape[:2]
        backend = self.backend_for(h, w).backend
        if self.settings.native:
            result = _infer_padded(backend, left_rgb, right_rgb)
            matching = self.settings.matching
            disparity = matching.at_first_level(left_rgb, right_rgb, result.disparity_px)
            disparity = matching.at_edges(left_rgb, right_rgb, disparity)
        else:
            result = infer_at_image_size(backend, left_rgb, right_rgb, self.settings.matching)
            disparity = result.disparity_px
        predicted = valid_disparity(disparity, result.confidence, self.settings.min_disparity,
                                    self.settings.min_confidence)
        return disparity, predicted


def _infer_padded(backend: StereoBackend, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
    h, w = left_rgb.shape[:2]
    pad = (0, backend.height - h, 0, backend.width - w)

    def padded(image: np.ndarray) -> np.ndarray:
        return np.asarray(cv2.copyMakeBorder(image, *pad, cv2.BORDER_REPLICATE))

    result = backend.infer(padded(left_rgb), padded(right_rgb))
    return StereoResult(result.disparity_px[:h, :w], result.confidence[:h, :w])
