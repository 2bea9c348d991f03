"""Write stereo camera topics to a real ROS 2 bag (rosbag2 sqlite3 or mcap) without a ROS install.

Messages are built with the pure-Python `rosbags` type store (the ROS 2 Kilted definitions, the distro
the node's wheels come from) and written with `rosbags.rosbag2.Writer`, which produces the same
directory layout as `ros2 bag record` (metadata.yaml + one .db3 or .mcap file). Used by the
held-out-domain bag (data/heldout_bag.py) and by the tests of the bag reader.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..geometry import StereoCamera

STORAGES = ("mcap", "sqlite3")
# Raw encodings a written Image can have, and the CompressedImage formats.
RAW_ENCODINGS = ("rgb8", "bgr8", "mono8")
COMPRESSED_FORMATS = ("jpeg", "png")
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@lru_cache(maxsize=1)
def typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore  # noqa: PLC0415 (only for bag work)
    return get_typestore(Stores.ROS2_KILTED)


def _header(stamp_ns: int, frame_id: str) -> Any:
    types = typestore().types
    stamp = types["builtin_interfaces/msg/Time"](sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(rgb: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = "", row_padding: int = 0) -> Any:
    """(H,W,3) uint8 RGB -> sensor_msgs/Image in `encoding` (rgb8, bgr8 or mono8); `row_padding`
    extra bytes at the end of every row (step > width * bytes per pixel, as some drivers send)."""
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"cannot write encoding {encoding!r}; choose one of {RAW_ENCODINGS}")
    h, w = rgb.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    # Padding bytes are 0xAB, not 0, so a reader that ignored `step` would show it.
    data = np.concatenate([rows, np.full((h, row_padding), 0xAB, np.uint8)], axis=1).reshape(-1)
    return typestore().types[IMAGE_TYPE](header=_header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
                                         is_bigendian=0, step=rows.shape[1] + row_padding, data=data)


def compressed_message(rgb: np.ndarray, image_format: str, stamp_ns: int, frame_id: str = "",
                       jpeg_quality: int = 95) -> Any:
    """(H,W,3) uint8 RGB -> sensor_msgs/CompressedImage (jpeg or png of the BGR image, as image_transport)."""
    if image_format not in COMPRESSED_FORMATS:
        raise ValueError(f"cannot write compressed format {image_format!r}; choose one of {COMPRESSED_FORMATS}")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if image_format == "jpeg" else []
    ok, encoded = cv2.imencode(f".{image_format}", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {image_format}")
    return typestore().types[COMPRESSED_TYPE](header=_header(stamp_ns, frame_id), format=image_format,
                                              data=np.asarray(encoded, np.uint8).reshape(-1))


def camera_info_message(camera: StereoCamera, right: bool, stamp_ns: int, frame_id: str = "") -> Any:
    """Rectified CameraInfo of one side: the right camera's P carries Tx = P[3] = -fx * baseline."""
    types = typestore().types
    k = np.array([camera.fx_px, 0, camera.cx_px, 0, camera.fy_px, camera.cy_px, 0, 0, 1], np.float64)
    cx = camera.cx_px + (camera.delta_cx_px if right else 0.0)
    tx = -camera.fx_px * camera.baseline_m if right else 0.0
    p = np.array([camera.fx_px, 0, cx, tx, 0, camera.fy_px, camera.cy_px, 0, 0, 0, 1, 0], np.float64)
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[INFO_TYPE](header=_header(stamp_ns, frame_id), height=camera.height, width=camera.width,
                            distortion_model="plumb_bob", d=np.zeros(5, np.float64), k=k,
                            r=np.eye(3, dtype=np.float64).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str  # e.g. sensor_msgs/msg/Image
    timestamp_ns: int  # the bag's receive time
    message: Any  # a rosbags message object of msgtype


def write_bag(path: str | Path, messages: Iterable[BagMessage], storage: str = "mcap") -> Path:
    """Write `messages` to a new rosbag2 directory `path` (must not exist). Returns the directory."""
    from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: PLC0415
    if storage not in STORAGES:
        raise ValueError(f"unknown bag storage {storage!r}; choose one of {STORAGES}")
    path = Path(path)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    store = typestore()
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        connections: dict[str, Any] = {}
        for item in messages:
            if item.topic not in connections:
                connections[item.topic] = writer.add_connection(item.topic, item.msgtype, typestore=store)
            writer.write(connections[item.topic], int(item.timestamp_ns),
                         store.serialize_cdr(item.message, item.msgtype))
    return path


def stereo_messages(stamp_ns: int, left_rgb: np.ndarray, right_rgb: np.ndarray, camera: StereoCamera | None,
                    encoding: str = "rgb8", namespace: str = "/stereo") -> list[BagMessage]:
    """One stereo frame as the topics a rectifying driver publishes: <ns>/{left,right}/image_rect
    (Image in a raw encoding, or .../image_rect/compressed for jpeg/png) and <ns>/{left,right}/camera_info."""
    out = []
    for side, rgb in (("left", left_rgb), ("right", right_rgb)):
        frame_id = f"{side}_camera_optical_frame"
        if encoding in COMPRESSED_FORMATS:
            out.append(BagMessage(f"{namespace}/{side}/image_rect/compressed", COMPRESSED_TYPE, stamp_ns,
                                  compressed_message(rgb, encoding, stamp_ns, frame_id)))
        else:
            out.append(BagMessage(f"{namespace}/{side}/image_rect", IMAGE_TYPE, stamp_ns,
                                  image_message(rgb, encoding, stamp_ns, frame_id)))
        if camera is not None:
            out.append(BagMessage(f"{namespace}/{side}/camera_info", INFO_TYPE, stamp_ns,
                                  camera_info_message(camera, side == "right", stamp_ns, frame_id)))
    return out
