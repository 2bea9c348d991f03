"""Raw image bytes (sensor_msgs/Image fields) -> numpy, without cv_bridge or rclpy.

Shared by the node (rclpy messages) and the bag reader (rosbags messages): both carry the same fields.
All conversions are whole-array numpy operations (no per-pixel Python). Image rows may be padded
(`step` > width * bytes per pixel) and multi-byte encodings may be big-endian (`is_bigendian`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class RawImage(Protocol):
    """The sensor_msgs/Image fields the decoders read (rclpy and rosbags messages both fit)."""
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: Any


@dataclass(frozen=True)
class Encoding:
    dtype: str  # numpy dtype of one channel, without byte order
    channels: int


ENCODINGS: dict[str, Encoding] = {
    "mono8": Encoding("u1", 1), "8UC1": Encoding("u1", 1),
    "rgb8": Encoding("u1", 3), "bgr8": Encoding("u1", 3), "8UC3": Encoding("u1", 3),
    "rgba8": Encoding("u1", 4), "bgra8": Encoding("u1", 4),
    "mono16": Encoding("u2", 1), "16UC1": Encoding("u2", 1),
    "32FC1": Encoding("f4", 1),
}
# Encodings the node accepts as camera images (converted to RGB for the network).
COLOUR_ENCODINGS = ("mono8", "rgb8", "bgr8", "rgba8", "bgra8")


class ImageError(ValueError):
    """A message that cannot be converted; the text says what is wrong (no topic: the caller adds it),
    `kind` names the problem (encoding, size, step, data) for callers that count or throttle by it."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind


def bytes_per_pixel(encoding: str) -> int:
    enc = ENCODINGS[encoding]
    return np.dtype(enc.dtype).itemsize * enc.channels


def image_to_array(msg: RawImage) -> np.ndarray:
    """Image -> (H,W) or (H,W,C) array in native byte order, a view of msg.data where possible."""
    enc = ENCODINGS.get(msg.encoding)
    if enc is None:
        raise ImageError("encoding", f"unsupported encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ImageError("size", f"empty image {w}x{h}")
    row_bytes = w * bytes_per_pixel(msg.encoding)
    if step < row_bytes:
        raise ImageError("step", f"step {step} is less than width*bytes_per_pixel = {w}*{row_bytes // w} = {row_bytes}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < step * h:
        raise ImageError("data", f"data has {data.size} bytes, less than step*height = {step}*{h} = {step * h}")
    # Strided view: rows `step` bytes apart, only the first row_bytes of each row are pixels.
    rows = data[:step * h].reshape(h, step)[:, :row_bytes]
    dtype = np.dtype(enc.dtype).newbyteorder(">" if msg.is_bigendian else "<")
    if dtype.itemsize > 1:
        rows = np.ascontiguousarray(rows)  # a padded row stride need not be a multiple of the item size
    pixels = rows.view(dtype).reshape((h, w, enc.channels) if enc.channels > 1 else (h, w))
    return pixels.astype(dtype.newbyteorder("="), copy=False)


def image_to_rgb(msg: RawImage) -> np.ndarray:
    """Camera image -> (H,W,3) uint8 RGB: mono replicated, BGR(A) reordered, alpha dropped."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ImageError("encoding", f"unsupported encoding {msg.encoding!r} for a camera image "
                         f"(supported: {', '.join(COLOUR_ENCODINGS)})")
    pixels = image_to_array(msg)
    if msg.encoding == "mono8":
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if msg.encoding.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])
