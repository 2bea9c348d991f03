"""serialize.serialize_large gives rclpy's own serialisation, for every data length mod 8: the same
length and the same message when read back by rclpy (alignment padding bytes are arbitrary in both)."""
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from ros2_stereo_depth.geometry import StereoCamera
from ros2_stereo_depth.ros.conversions import array_to_image, build_disparity_image, build_point_cloud
from ros2_stereo_depth.ros.serialize import serialize_large

RNG = np.random.default_rng(1)


def header() -> Header:
    h = Header(frame_id="odd_length_frame_id_x")
    h.stamp.sec, h.stamp.nanosec = 1700000000, 123456789
    return h


@pytest.mark.parametrize("width", range(1, 9))
def test_same_bytes_as_rclpy(width):
    mono = array_to_image(RNG.integers(0, 256, (3, width), dtype=np.uint8), "mono8", header())
    disparity = build_disparity_image(RNG.normal(size=(2, width)).astype(np.float32), header(), 320.0, 0.12, 0.0,
                                      64.0, 0.0625)
    camera = StereoCamera(100.0, 100.0, 1.0, 1.0, 0.1, width, 3)
    cloud = build_point_cloud(camera, RNG.uniform(1, 5, (3, width)).astype(np.float32), 0.0,
                              RNG.integers(0, 256, (3, width, 3), dtype=np.uint8), header(), avoid_padding=True)
    cloud.fields = cloud.fields[:3]  # a 12-byte point: data lengths that are not multiples of 4
    cloud.point_step, cloud.row_step = 12, 12 * width
    cloud._data = cloud._data[:12 * 3 * width]
    for msg in (mono, disparity, cloud):
        raw, reference = serialize_large(msg), serialize_message(msg)
        assert len(raw) == len(reference), type(msg).__name__
        back = deserialize_message(raw, type(msg))
        assert back == deserialize_message(reference, type(msg)), type(msg).__name__  # float32 fields: as rclpy
        holder = back.image if hasattr(back, "image") else back
        assert bytes(holder.data) == bytes((msg.image if hasattr(msg, "image") else msg).data)
