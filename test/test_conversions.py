"""Image <-> numpy with padded rows and both byte orders; rgb packing; PointCloud2 / DisparityImage layout."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from sensor_msgs.msg import Image, PointField
from std_msgs.msg import Header

from ros2_stereo_depth.image_encoding import ImageError, image_to_array, image_to_rgb
from ros2_stereo_depth.geometry import StereoCamera
from ros2_stereo_depth.ros.conversions import (CLOUD_BAND_BYTES, array_to_image, build_disparity_image,
                                               build_point_cloud, pack_rgb, point_cloud_to_array, unpack_rgb,
                                               valid_window)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("encoding,channels", [("mono8", 1), ("rgb8", 3), ("bgr8", 3), ("rgba8", 4), ("bgra8", 4)])
def test_padded_round_trip(encoding, channels):
    shape = (5, 7, channels) if channels > 1 else (5, 7)
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    step = 7 * channels + 5  # odd padding: rows are not aligned to the pixel size
    msg = array_to_image(pixels, encoding, step=step)
    assert msg.step == step and len(msg.data) == step * 5
    raw = np.frombuffer(msg.data, np.uint8).reshape(5, step)
    assert not raw[:, 7 * channels:].any(), "padding bytes must be zero, not pixels"
    np.testing.assert_array_equal(image_to_array(msg), pixels)


def test_to_rgb_channel_orders():
    rgb = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(rgb, "rgb8", step=20)), rgb)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(rgb[:, :, ::-1], "bgr8", step=20)), rgb)
    alpha = np.full((4, 6, 1), 9, np.uint8)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(np.concatenate([rgb, alpha], 2), "rgba8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(array_to_image(np.concatenate([rgb[:, :, ::-1], alpha], 2),
                                                              "bgra8")), rgb)
    grey = rgb[:, :, 0]
    out = image_to_rgb(array_to_image(grey, "mono8", step=11))
    assert out.shape == (4, 6, 3) and all((out[:, :, c] == grey).all() for c in range(3))


@pytest.mark.parametrize("bigendian", [False, True])
def test_float_image_byte_order_and_padding(bigendian):
    values = RNG.normal(size=(3, 4)).astype(np.float32)
    step = 4 * 4 + 2  # padding not a multiple of 4 bytes
    rows = [values[i].astype(">f4" if bigendian else "<f4").tobytes() + b"\xff\xff" for i in range(3)]
    msg = Image(height=3, width=4, encoding="32FC1", is_bigendian=int(bigendian), step=step)
    msg.data = b"".join(rows)
    np.testing.assert_array_equal(image_to_array(msg), values)


def test_rejects_bad_images():
    msg = array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    msg.encoding = "yuv422"
    with pytest.raises(ImageError, match="unsupported encoding 'yuv422'"):
        image_to_rgb(msg)
    msg = array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    msg.step = 17
    with pytest.raises(ImageError, match="step 17 is less than width"):
        image_to_rgb(msg)
    msg = array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageError, match="71 bytes, less than step\\*height = 18\\*4 = 72"):
        image_to_rgb(msg)
    with pytest.raises(ImageError, match="for a camera image"):
        image_to_rgb(array_to_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_rgb_packing_bits():
    packed = pack_rgb(np.array([[0x12, 0x34, 0x56], [255, 0, 1]], np.uint8))
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0x00123456, 0x00FF0001]
    colours = RNG.integers(0, 256, (10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(colours)), colours)


@pytest.mark.parametrize("avoid_padding,step,rgb_offset", [(False, 32, 16), (True, 16, 12)])
def test_point_cloud_layout(avoid_padding, step, rgb_offset):
    h, w = 3, 5
    camera = StereoCamera(100.0, 110.0, 2.0, 1.0, 0.2, w, h)
    disparity = RNG.uniform(1.0, 8.0, (h, w)).astype(np.float32)
    disparity[1, 2] = -1.0  # invalid
    xyz = camera.points_from_disparity(disparity)
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = build_point_cloud(camera, disparity, 0.0, rgb, header, avoid_padding)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", rgb_offset, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (h, w, step, step * w)
    assert not msg.is_bigendian and not msg.is_dense and len(msg.data) == step * h * w
    assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
    # Point (row 2, column 3) read with struct at its byte offsets, as a C++ consumer would.
    base = (2 * w + 3) * step
    x, y, z = struct.unpack_from("<fff", bytes(msg.data), base)
    (colour,) = struct.unpack_from("<I", bytes(msg.data), base + rgb_offset)
    assert (x, y, z) == tuple(float(v) for v in xyz[2, 3])
    assert z == pytest.approx(100.0 * 0.2 / disparity[2, 3], rel=1e-6)
    assert colour == (int(rgb[2, 3, 0]) << 16) | (int(rgb[2, 3, 1]) << 8) | int(rgb[2, 3, 2])
    back = point_cloud_to_array(msg)
    assert np.isnan(back["z"][1, 2]) and np.array_equal(back["y"][0], xyz[0, :, 1])
    no_colour = build_point_cloud(camera, disparity, 0.0, None, header, avoid_padding)
    assert [f.name for f in no_colour.fields] == ["x", "y", "z"] and no_colour.point_step == (12 if avoid_padding else 16)
    np.testing.assert_array_equal(point_cloud_to_array(no_colour)["x"], back["x"])


@pytest.mark.parametrize("depth_given", [False, True])
def test_point_cloud_written_in_row_bands_equals_the_whole_image(depth_given):
    """build_point_cloud writes a band of rows at a time (CLOUD_BAND_BYTES): every point, the last
    band's short one included, and the padding, as if the image were one band."""
    h, w = 301, 64  # 128 rows of 64 padded 32-byte points per 256 KB band: three bands, the last 45 rows
    assert h % (CLOUD_BAND_BYTES // (32 * w)) not in (0, h)
    camera = StereoCamera(100.0, 110.0, 30.0, 150.5, 0.2, w, h)
    disparity = RNG.uniform(1.0, 8.0, (h, w)).astype(np.float32)
    disparity[RNG.random((h, w)) < 0.1] = -1.0
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    depth = camera.depth_from_disparity(disparity) if depth_given else None
    msg = build_point_cloud(camera, disparity, 0.0, rgb, Header(frame_id="cam"), depth_m=depth)
    cloud, xyz = point_cloud_to_array(msg), camera.points_from_disparity(disparity)
    for i, name in enumerate("xyz"):
        np.testing.assert_array_equal(cloud[name], xyz[..., i])
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), rgb)
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(h, w, 32)
    assert not raw[..., 12:16].any() and not raw[..., 20:].any()  # padding stays zero


def test_valid_window():
    valid = np.zeros((6, 8), bool)
    valid[2:5, 3:7] = True
    valid[4, 1] = True
    w = valid_window(valid)
    assert (w.x_offset, w.y_offset, w.width, w.height) == (1, 2, 6, 3)
    assert valid_window(np.zeros((2, 2), bool)).width == 0


def test_disparity_image():
    d = np.arange(12, dtype=np.float32).reshape(3, 4)
    header = Header(frame_id="left")
    msg = build_disparity_image(d, header, 320.0, 0.12, 0.0, 64.0, 0.0625)
    assert (msg.f, msg.t, msg.min_disparity, msg.max_disparity, msg.delta_d) == pytest.approx(
        (320.0, 0.12, 0.0, 64.0, 0.0625))
    assert (msg.image.encoding, msg.image.step, msg.image.header.frame_id) == ("32FC1", 16, "left")
    assert (msg.valid_window.width, msg.valid_window.height) == (4, 3)
    np.testing.assert_array_equal(image_to_array(msg.image), d)
