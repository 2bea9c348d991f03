"""numpy -> sensor_msgs/Image, PointCloud2 and DisparityImage building, without cv_bridge.

Decoding incoming images lives in `image_encoding.py` (shared with the bag reader).
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from ..image_encoding import ENCODINGS, bytes_per_pixel




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
