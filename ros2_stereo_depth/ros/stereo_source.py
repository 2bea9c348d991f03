"""`stereo_source`: publishes the built-in synthetic stereo sequence as a calibrated stereo camera.

Publishes (relative names) left/image_rect, right/image_rect (rgb8), left/camera_info and
right/camera_info (plumb_bob, no distortion, rectified: right P[3] = -fx * baseline), all four with the
same stamp, and the exact ground truth on ground_truth/disparity (DisparityImage, same stamp, left
frame) so a consumer can score the depth node. Frames are rendered on the fly from
data.synthetic.SyntheticSequence (layers sliding sideways), so the sequence never repeats.
"""
from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from ..data.synthetic import SceneParams, SyntheticSequence
from .params import Param, declare_parameters
from .spin import run_node
from .conversions import array_to_image, build_disparity_image


def camera_infos(width: int, height: int, fx: float, baseline_m: float, header_left: Header,
                 header_right: Header) -> tuple[CameraInfo, CameraInfo]:
    """An ideal rectified pair: same K for both, principal point at the image centre, no distortion."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    infos = []
    for header, tx in ((header_left, 0.0), (header_right, -fx * baseline_m)):
        infos.append(CameraInfo(
            header=header, width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
            k=[fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0], r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p=[fx, 0.0, cx, tx, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]))
    return infos[0], infos[1]


PARAMETERS: dict[str, Param] = {
    "rate": Param(5.0, "frames per second", 0.01, 1000.0),
    "width": Param(640, "image width in pixels", 16, 4096),
    "height": Param(480, "image height in pixels", 16, 4096),
    "max_disparity": Param(64.0, "largest disparity in the scene, pixels", 1.0, 1024.0),
    "fx": Param(0.0, "focal length in pixels; 0: width / 2 (a 90 degree field of view)", 0.0, 1e5),
    "baseline": Param(0.12, "stereo baseline in metres", 1e-4, 100.0),
    "seed": Param(7, "scene seed", 0, 2**31 - 1),
    "frames": Param(0, "stop after this many frames; 0: run until shut down", 0, 10**9),
    "frame_id": Param("stereo_left_optical_frame", "left camera frame id"),
    "right_frame_id": Param("stereo_right_optical_frame", "right camera frame id"),
    "publish_ground_truth": Param(True, "publish ground_truth/disparity"),
    # Volatile topics: frames published before a subscriber is discovered are lost to it. A consumer
    # that must see every frame (the demo) sets this to its number of left/image_rect subscribers.
    "wait_for_subscribers": Param(0, "publish nothing until each camera topic (images and camera infos) has "
                                  "this many subscribers", 0, 1000),
    "qos_reliability": Param("reliable", "publisher reliability", choices=("reliable", "best_effort")),
}


class StereoSource(Node):
    def __init__(self, **kwargs: object) -> None:
        super().__init__("stereo_source", **kwargs)
        p = declare_parameters(self, PARAMETERS)
        self.rate_hz = p["rate"]
        width, height, max_disparity = p["width"], p["height"], p["max_disparity"]
        self.fx = p["fx"] or width / 2.0
        self.baseline_m = p["baseline"]
        seed, self.frames = p["seed"], p["frames"]
        self.frame_id, self.right_frame_id = p["frame_id"], p["right_frame_id"]
        self.publish_gt = p["publish_ground_truth"]
        self.wait_for_subscribers = p["wait_for_subscribers"]
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                         reliability=ReliabilityPolicy.BEST_EFFORT if p["qos_reliability"] == "best_effort"
                         else ReliabilityPolicy.RELIABLE)
        self.sequence = SyntheticSequence(SceneParams(height=height, width=width, max_disparity_px=max_disparity),
                                          seed=seed)
        self.pub_left = self.create_publisher(Image, "left/image_rect", qos)
        self.pub_right = self.create_publisher(Image, "right/image_rect", qos)
        self.pub_left_info = self.create_publisher(CameraInfo, "left/camera_info", qos)
        self.pub_right_info = self.create_publisher(CameraInfo, "right/camera_info", qos)
        self.pub_gt = self.create_publisher(DisparityImage, "ground_truth/disparity", qos)
        self.index = 0
        self.timer = self.create_timer(1.0 / self.rate_hz, self.tick)
        self.get_logger().info(f"synthetic stereo {width}x{height} at {self.rate_hz:g} Hz, fx {self.fx:g} px, "
                               f"baseline {self.baseline_m:g} m, frame {self.frame_id}")

    def tick(self) -> None:
        if self.frames and self.index >= self.frames:
            self.timer.cancel()
            return
        cameras = (self.pub_left, self.pub_right, self.pub_left_info, self.pub_right_info)
        if self.index == 0 and min(p.get_subscription_count() for p in cameras) < self.wait_for_subscribers:
            return
        sample = self.sequence.frame(self.index)
        stamp = self.get_clock().now().to_msg()
        left = Header(stamp=stamp, frame_id=self.frame_id)
        right = Header(stamp=stamp, frame_id=self.right_frame_id)
        info_left, info_right = camera_infos(sample.left.shape[1], sample.left.shape[0], self.fx, self.baseline_m,
                                             left, right)
        self.pub_left.publish(array_to_image(sample.left, "rgb8", left))
        self.pub_right.publish(array_to_image(sample.right, "rgb8", right))
        self.pub_left_info.publish(info_left)
        self.pub_right_info.publish(info_right)
        if self.publish_gt:
            d = sample.disparity_px
            self.pub_gt.publish(build_disparity_image(d, left, self.fx, self.baseline_m, 0.0, float(np.max(d)), 0.0))
        self.index += 1


def main(args: list[str] | None = None) -> int:
    return run_node(StereoSource, "stereo_source", args)


if __name__ == "__main__":
    sys.exit(main())
