"""Exported ONNX graphs cached under $ROS_HOME/stereo_depth/onnx, keyed by everything that shapes the
graph: the weights' sha256, the architecture, input size, search range, export precision and exporter
(opset, torch version). A warm start of the ONNX Runtime backend then skips the export (seconds).
Random weights (no weights file) are never cached: every process draws other ones.

The cache does not grow without bound: graphs that differ only in their key (other weights, an older
exporter) share a slot (config, input size, search range, precision), and after each export only the
KEEP_PER_SLOT most recently used graphs of the slot stay. A cache hit marks its graph as used (mtime)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

from ..config import ONNX_OPSET
from .paths import onnx_cache_dir
from .sidecar import sidecar_path, sidecar_problems
from .weights import LoadedModel, WeightsInfo, build_model

# Bump when onnx_export.py changes the graph it writes for the same inputs.
EXPORT_FORMAT = 1
# Graphs kept per slot: the shipped weights and one fine-tuned set can alternate without re-exports.
KEEP_PER_SLOT = 2
KEY_CHARS = 24  # the key ends every cached graph's name: <slot><key>.onnx


def onnx_cache_key(weights_sha256: str, architecture: dict[str, object], height: int, width: int,
                   max_disparity: int, precision: str) -> str:
    fields = {"weights_sha256": weights_sha256, "architecture": architecture, "height": height, "width": width,
              "max_disparity": max_disparity, "precision": precision, "opset": ONNX_OPSET,
              "torch": version("torch"), "export_format": EXPORT_FORMAT}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:KEY_CHARS]


def cached_onnx_path(model: WeightsInfo, height: int, width: int, precision: str = "fp32") -> Path:
    if model.weights_sha256 is None:
        raise ValueError("random weights are not cached: export them to a temporary file")
    key = onnx_cache_key(model.weights_sha256, model.config.architecture(), height, width,
                         model.config.max_disparity, precision)
    return onnx_cache_dir() / f"{model.config.name}_{width}x{height}_d{model.config.max_disparity}_{precision}_{key}.onnx"


def prune_slot(kept: Path) -> list[Path]:
    """Remove the graphs (and sidecars) of `kept`'s slot beyond the KEEP_PER_SLOT most recently used; `kept`
    always stays. Returns the removed graphs. A file another process removed first is not an error."""
    slot = kept.name[:-(KEY_CHARS + len(".onnx"))]
    others = [p for p in kept.parent.glob(f"{slot}{'?' * KEY_CHARS}.onnx") if p != kept]

    def last_used(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    removed = sorted(others, key=last_used, reverse=True)[KEEP_PER_SLOT - 1:]
    for path in removed:
        for file in (path, sidecar_path(path)):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
    return removed


def cached_onnx(weights: WeightsInfo, height: int, width: int, precision: str = "fp32") -> tuple[Path, bool]:
    """(path, exported_now): the cached graph if its sidecar verifies, else a fresh export into the cache.
    The network (and torch) is built only to export: a warm start needs neither."""
    path = cached_onnx_path(weights, height, width, precision)
    _, problems = sidecar_problems(path, "onnx")
    if not problems:
        with contextlib.suppress(OSError):  # a read-only cache still serves its graphs
            os.utime(path)
        return path, False
    from .onnx_export import export_onnx

    model = weights if isinstance(weights, LoadedModel) else build_model(weights)
    export_onnx(model, path, height, width, precision)
    prune_slot(path)
    return path, True
