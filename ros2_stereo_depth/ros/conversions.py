"""sensor_msgs/Image <-> numpy, PointCloud2 and DisparityImage building, without cv_bridge.

All conversions are whole-array numpy operations (no per-pixel Python). Image rows may be padded
(`step` > width * bytes per pixel) and multi-byte encodings may be big-endian (`is_bigendian`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage


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


def image_to_array(msg: Image) -> np.ndarray:
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


def image_to_rgb(msg: Image) -> np.ndarray:
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


def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None,
                   step: int | None = None) -> Image:
    """(H,W[,C]) array -> Image, little-endian; `step` > the packed row size pads each row with zeros."""
    enc = ENCODINGS[encoding]
    array = np.asarray(array)
    channels = array.shape[2] if array.ndim == 3 else 1
    if channels != enc.channels:
        raise ValueError(f"{encoding} needs {enc.channels} channels, the array has {channels}")
    h, w = array.shape[:2]
    pixels = np.ascontiguousarray(array, dtype=np.dtype(enc.dtype).newbyteorder("<"))
    row_bytes = w * bytes_per_pixel(encoding)
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ValueError(f"step {step} < row size {row_bytes}")
    if step == row_bytes:
        data = pixels.tobytes()
    else:
        padded = np.zeros((h, step), np.uint8)
        padded[:, :row_bytes] = pixels.view(np.uint8).reshape(h, row_bytes)
        data = padded.tobytes()
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step)
    if header is not None:
        msg.header = header
    msg.data = data
    return msg


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(...,3) uint8 -> (...) float32 holding the bits of uint32 0x00RRGGBB, as stereo_image_proc packs
    its `rgb` field (PCL convention)."""
    rgb = np.asarray(rgb, np.uint8).astype(np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return packed.astype(np.uint32).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    bits = np.asarray(packed, np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], axis=-1).astype(np.uint8)


POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])
POINT_FIELDS = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                for i, name in enumerate(("x", "y", "z", "rgb"))]


def build_point_cloud(points_xyz: np.ndarray, rgb: np.ndarray, header: Header) -> PointCloud2:
    """Organised (H,W) cloud: x,y,z,rgb float32 at offsets 0,4,8,12, point_step 16, NaN where invalid."""
    h, w = points_xyz.shape[:2]
    cloud = np.empty((h, w), POINT_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = points_xyz[..., 0], points_xyz[..., 1], points_xyz[..., 2]
    cloud["rgb"] = pack_rgb(rgb)
    msg = PointCloud2(header=header, height=h, width=w, fields=list(POINT_FIELDS), is_bigendian=False,
                      point_step=POINT_DTYPE.itemsize, row_step=POINT_DTYPE.itemsize * w, is_dense=False)
    msg.data = cloud.tobytes()
    return msg


def point_cloud_to_array(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 with x,y,z,rgb float32 fields -> (H,W) structured array (for tests and the demo)."""
    offsets = {f.name: f.offset for f in msg.fields}
    dtype = np.dtype({"names": list(offsets), "formats": [">f4" if msg.is_bigendian else "<f4"] * len(offsets),
                      "offsets": list(offsets.values()), "itemsize": msg.point_step})
    data = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, :msg.point_step * msg.width]
    return np.ascontiguousarray(data).view(dtype).reshape(msg.height, msg.width)


def build_disparity_image(disparity_px: np.ndarray, header: Header, f_px: float, t_m: float,
                          min_disparity: float, max_disparity: float, delta_d: float) -> DisparityImage:
    """DisparityImage with a 32FC1 image; invalid pixels must already hold a value < min_disparity."""
    h, w = disparity_px.shape
    msg = DisparityImage(header=header, f=float(f_px), t=float(t_m), min_disparity=float(min_disparity),
                         max_disparity=float(max_disparity), delta_d=float(delta_d),
                         valid_window=RegionOfInterest(x_offset=0, y_offset=0, height=h, width=w))
    msg.image = array_to_image(disparity_px.astype(np.float32), "32FC1", header)
    return msg
