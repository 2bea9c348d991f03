"""In-process stereo_depth_node plus a client node that talks to it over real DDS (no rclpy mocks).

Each harness has its own rclpy Context and namespace, so two harnesses (or a node in a subprocess) in
the same test domain never share topics. conftest.py picks the domain.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from ros2_stereo_depth.data.synthetic import SceneParams, SyntheticSequence
from ros2_stereo_depth.ros.conversions import array_to_image
from ros2_stereo_depth.ros.stereo_source import camera_infos
from ros2_stereo_depth.ros.sync import stamp_key

FX = 160.0  # px at 320 width
BASELINE = 0.12  # m
FRAME_ID = "test_left_optical"
OUTPUTS = {"disparity": DisparityImage, "points2": PointCloud2, "depth": Image, "confidence": Image,
           "disparity/image_color": Image}
DEFAULT_OUTPUTS = ("disparity", "points2", "depth")


def stereo_pair(width: int = 320, height: int = 240, index: int = 0):
    """A synthetic sample (left, right RGB and exact disparity) at width x height."""
    return SyntheticSequence(SceneParams(height=height, width=width, max_disparity_px=32.0), seed=3).frame(index)


def running(namespace: str, params: dict[str, Any], reliable: bool = True) -> Iterator["Harness"]:
    """The body of a module fixture: a harness with the node started and its topics matched, closed after."""
    harness = Harness(namespace, params, reliable)
    try:
        harness.wait_connected()
        yield harness
    finally:
        harness.close()


class Harness:
    def __init__(self, namespace: str, params: dict[str, Any], reliable: bool = True,
                 start_node: bool = True, outputs: tuple[str, ...] = DEFAULT_OUTPUTS) -> None:
        from ros2_stereo_depth.ros.node import StereoDepthNode

        self.namespace = namespace
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=3, context=self.context)
        self.node = None
        if start_node:
            self.node = StereoDepthNode(context=self.context, namespace=namespace,
                                        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
            self.executor.add_node(self.node)
        self.client = rclpy.create_node("stereo_test_client", namespace=namespace, context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
                         if reliable else ReliabilityPolicy.BEST_EFFORT)
        self.pubs = [self.client.create_publisher(t, n, qos) for t, n in (
            (Image, "left/image_rect"), (Image, "right/image_rect"),
            (CameraInfo, "left/camera_info"), (CameraInfo, "right/camera_info"))]
        self.lock = threading.Lock()
        self.outputs: dict[int, dict[str, Any]] = {}
        self.receive_times: dict[int, float] = {}
        self.logs: list[Log] = []
        self.diagnostics: list[Any] = []  # this node's DiagnosticStatus messages, in arrival order
        self.out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.output_subs = {name: self.subscribe(name) for name in outputs}
        self.client.create_subscription(Log, "/rosout", self._log, QoSProfile(depth=100))
        self.client.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, QoSProfile(depth=20))
        self.executor.add_node(self.client)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.stamp_ns = time.time_ns()

    def subscribe(self, name: str) -> Any:
        return self.client.create_subscription(OUTPUTS[name], name, lambda m, n=name: self._store(n, m), self.out_qos)

    def unsubscribe(self, name: str) -> None:
        self.client.destroy_subscription(self.output_subs.pop(name))

    def _diagnostics(self, msg: Any) -> None:
        with self.lock:
            self.diagnostics += [s for s in msg.status if s.name.startswith(f"{self.namespace}/stereo_depth_node")]

    def diagnostic_values(self, since: int = 0, timeout: float = 5.0) -> tuple[Any, dict[str, str]]:
        """The first status of this node received after the since-th one, and its values by key."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.diagnostics) > since:
                    status = self.diagnostics[since]
                    return status, {kv.key: kv.value for kv in status.values}
            time.sleep(0.05)
        raise TimeoutError("no /diagnostics status from the node")

    def _store(self, name: str, msg: Any) -> None:
        with self.lock:
            self.outputs.setdefault(stamp_key(msg), {})[name] = msg

    def _log(self, msg: Log) -> None:
        with self.lock:
            self.logs.append(msg)

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self.pubs) and all(
                    self.client.count_publishers(f"{self.namespace}/{n}") > 0 for n in self.output_subs) and all(
                    s.get_publisher_count() > 0 for s in self.output_subs.values()):
                return
            time.sleep(0.05)
        raise TimeoutError("the node's topics did not match the client's within the timeout")

    def next_header(self) -> Header:
        """A fresh, strictly increasing stamp (the sync drops sets older than a completed one)."""
        self.stamp_ns += 10_000_000
        header = Header(frame_id=FRAME_ID)
        header.stamp.sec, header.stamp.nanosec = divmod(self.stamp_ns, 1_000_000_000)
        return header

    def messages(self, left: np.ndarray, right: np.ndarray, header: Header, encoding: str = "rgb8",
                 step: int | None = None) -> list[Any]:
        """The four messages of one good set; callers may break any of them."""
        h, w = left.shape[:2]
        right_header = Header(stamp=header.stamp, frame_id="test_right_optical")
        infos = camera_infos(w, h, FX * w / 320.0, BASELINE, header, right_header)
        if encoding == "bgr8":
            left, right = left[:, :, ::-1], right[:, :, ::-1]
        return [array_to_image(left, encoding, header, step), array_to_image(right, encoding, right_header, step),
                infos[0], infos[1]]

    def publish(self, msgs: list[Any]) -> int:
        for pub, msg in zip(self.pubs, msgs):
            pub.publish(msg)
        return stamp_key(msgs[0])

    def wait_for(self, key: int, names=DEFAULT_OUTPUTS, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = self.outputs.get(key, {})
                if all(n in got for n in names):
                    return dict(got)
            time.sleep(0.02)
        raise TimeoutError(f"no {names} output for stamp {key} within {timeout} s; got {sorted(self.outputs)}")

    def error_logs(self, *needles: str, since: int = 0) -> list[str]:
        """ERROR lines of the node containing every needle, from the since-th /rosout message on."""
        with self.lock:
            return [m.msg for m in self.logs[since:] if m.level == Log.ERROR and m.name.endswith("stereo_depth_node")
                    and all(n in m.msg for n in needles)]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        if self.node is not None:
            self.node.destroy_node()
        self.client.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)
