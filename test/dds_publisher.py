"""A stand-in camera driver for delivery tests, run as its own process: publishes `count` stereo sets
(rgb8 images + camera infos, one stamp per set) at `rate` Hz once every topic has a subscriber.

  python dds_publisher.py NAMESPACE best_effort|reliable WIDTH HEIGHT RATE COUNT
"""
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from ros2_stereo_depth.ros.conversions import array_to_image
from ros2_stereo_depth.ros.stereo_source import camera_infos


def main() -> int:
    namespace, reliability = sys.argv[1], sys.argv[2]
    width, height, rate, count = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    rclpy.init()
    node = rclpy.create_node("dds_publisher", namespace=namespace)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.BEST_EFFORT
                     if reliability == "best_effort" else ReliabilityPolicy.RELIABLE)
    pubs = [node.create_publisher(t, n, qos) for t, n in ((Image, "left/image_rect"), (Image, "right/image_rect"),
                                                          (CameraInfo, "left/camera_info"),
                                                          (CameraInfo, "right/camera_info"))]
    deadline = time.monotonic() + 30
    while min(p.get_subscription_count() for p in pubs) < 1:
        if time.monotonic() > deadline:
            print("no subscriber", flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(0.5)  # discovery of the reverse direction
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    start = time.monotonic()
    for i in range(count):
        left = Header(stamp=node.get_clock().now().to_msg(), frame_id="left_optical")
        right = Header(stamp=left.stamp, frame_id="right_optical")
        infos = camera_infos(width, height, width / 2.0, 0.12, left, right)
        for pub, msg in zip(pubs, (array_to_image(pixels, "rgb8", left), array_to_image(pixels, "rgb8", right),
                                   *infos)):
            pub.publish(msg)
        time.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
    print(f"published {count} sets in {time.monotonic() - start:.2f} s", flush=True)
    time.sleep(1.0)  # let the last samples go out before the participant is deleted
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
