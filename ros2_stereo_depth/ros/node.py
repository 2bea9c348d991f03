"""`stereo_depth_node`: rectified stereo images + camera infos -> DisparityImage, PointCloud2, depth.

Subscribes (relative names, so namespaces and remappings work):
  left/image_rect, right/image_rect   sensor_msgs/Image (mono8, rgb8, bgr8, rgba8, bgra8)
  left/camera_info, right/camera_info sensor_msgs/CameraInfo
Publishes:
  disparity  stereo_msgs/DisparityImage (32FC1 at the camera resolution)
  points2    sensor_msgs/PointCloud2 (organised, x y z rgb float32, NaN where invalid)
  depth      sensor_msgs/Image 32FC1 metres (NaN where invalid), when publish_depth

QoS: the subscriptions are BEST_EFFORT by default (`qos_reliability`), like stereo_image_proc's
sensor-data default: a best-effort subscription matches both reliable and best-effort publishers, a
reliable one matches only reliable publishers (camera drivers often publish best effort). Use
`reliable` where every frame must arrive (bags, tests). Publishers are RELIABLE, which both kinds of
subscriber accept.

Threads: the subscription callbacks only pair, check and convert messages; inference runs in a worker
thread on the newest complete set. A set arriving while one is still waiting is dropped (counted): a
depth stream wants the newest frame, not a growing backlog. Invalid sets are rejected before they can
displace a valid one.

Conventions (as stereo_image_proc): f = P_right[0], t = -P_right[3]/P_right[0] (baseline, metres); the
published disparity is d = x_left - x_right + (cx_right - cx_left), so z = f*t/d; invalid pixels hold
min_disparity - 1; the header (stamp and frame_id) of every output is the left image's.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from stereo_msgs.msg import DisparityImage

from ..geometry import StereoCamera
from ..inference.base import StereoBackend, infer_at_image_size
from ..inference.select import BACKENDS, BackendRequest, create_backend
from .spin import run_node
from ..image_encoding import ImageError, image_to_rgb
from .conversions import array_to_image, build_disparity_image, build_point_cloud
from .sync import ExactTimeSync

TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")
ERROR_THROTTLE_S = 5.0  # one error per topic and problem in this period
# The network regresses a continuous (soft-argmin) disparity; 1/16 px is the nominal sub-pixel step
# reported in DisparityImage.delta_d, the same value stereo_image_proc's block matchers report.
DELTA_D = 1.0 / 16.0


@dataclass(frozen=True)
class Param:
    default: Any
    description: str
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    read_only: bool = True  # backend parameters only take effect at start-up
    choices: tuple[str, ...] = ()


# Names follow stereo_image_proc where they overlap (queue_size, min_disparity). Defaults match
# config/stereo_depth.yaml.
PARAMETERS: dict[str, Param] = {
    "backend": Param("auto", "inference backend: auto (TensorRT when an engine is valid, else ONNX Runtime), "
                     "tensorrt, onnxruntime or torch", choices=BACKENDS),
    "config": Param("fast", "network config name: tiny, fast or accurate"),
    "weights": Param("", "safetensors weights file; empty: the weights shipped for `config`"),
    "engine_path": Param("", "TensorRT engine; empty: $ROS_HOME/stereo_depth/engines/<config>_<W>x<H>_d<D>_<precision>.engine"),
    "build_engine_if_missing": Param(False, "with TensorRT present: build a missing or stale engine at "
                                     "engine_path once (minutes) and cache it"),
    "dla_core": Param(-1, "Jetson DLA core the engine is built for; -1: GPU only", int_range=(-1, 7)),
    "cuda_graphs": Param(False, "tensorrt / torch on CUDA: replay a captured CUDA graph after the first frame"),
    "onnx_path": Param("", "ONNX model for onnxruntime; empty: exported into a temporary directory at start-up"),
    "precision": Param("fp16", "TensorRT engine / CUDA torch precision: fp32, fp16 or int8",
                       choices=("fp32", "fp16", "int8")),
    "input_width": Param(0, "network input width in pixels (images are resized to it); 0: the config's",
                         int_range=(0, 4096)),
    "input_height": Param(0, "network input height in pixels; 0: the config's", int_range=(0, 4096)),
    "max_disparity": Param(0, "disparities searched at the network input resolution; 0: the config's",
                           int_range=(0, 1024)),
    "threads": Param(0, "CPU threads for inference; 0: the library default", int_range=(0, 256)),
    "queue_size": Param(5, "incomplete stamp sets kept by the exact-time synchroniser, and the "
                        "subscription depth", int_range=(1, 100)),
    "qos_reliability": Param("best_effort", "subscription reliability: best_effort (matches reliable and "
                             "best-effort publishers) or reliable (only reliable publishers)",
                             choices=("best_effort", "reliable")),
    "min_disparity": Param(0.0, "disparities (px, camera resolution) at or below this are invalid",
                           float_range=(-1024.0, 1024.0), read_only=False),
    "min_confidence": Param(0.0, "pixels whose network confidence is below this are invalid (0: keep all)",
                            float_range=(0.0, 1.0), read_only=False),
    "publish_points": Param(True, "publish the points2 PointCloud2", read_only=False),
    "publish_depth": Param(True, "publish the depth image (32FC1, metres)", read_only=False),
}


class InputError(ValueError):
    """A synchronised set the node cannot use; `topic` is the offending topic, `kind` keys the throttle."""

    def __init__(self, topic: str, kind: str, problem: str) -> None:
        super().__init__(f"{topic}: {problem}")
        self.topic, self.kind = topic, kind


@dataclass
class Frame:
    header: Header  # the left image's
    left_rgb: np.ndarray  # (H,W,3) uint8 at the camera resolution
    right_rgb: np.ndarray
    camera: StereoCamera  # at the camera resolution
    f_px: float  # right P[0]
    baseline_m: float  # -right P[3] / right P[0]
    min_disparity: float
    min_confidence: float
    publish_points: bool
    publish_depth: bool


def check_inputs(msgs: list[Any], topics: list[str]) -> tuple[np.ndarray, np.ndarray, StereoCamera, float]:
    """Validate a synchronised (left image, right image, left info, right info) set.
    Returns left RGB, right RGB, the camera at image resolution and the right focal length; raises InputError."""
    left_img, right_img, left_info, right_info = msgs
    rgb = []
    for topic, img in zip(topics[:2], (left_img, right_img)):
        try:
            rgb.append(image_to_rgb(img))
        except ImageError as error:
            raise InputError(topic, error.kind, str(error)) from None
    (lh, lw), (rh, rw) = rgb[0].shape[:2], rgb[1].shape[:2]
    if (lh, lw) != (rh, rw):
        raise InputError(topics[1], "size", f"image is {rw}x{rh} but {topics[0]} is {lw}x{lh}; "
                                            "left and right must have the same size")
    for topic, info, (h, w) in ((topics[2], left_info, (lh, lw)), (topics[3], right_info, (rh, rw))):
        if (int(info.height), int(info.width)) != (h, w):
            raise InputError(topic, "info_size", f"camera_info is {info.width}x{info.height} but the image is "
                                                 f"{w}x{h}; they must describe the same resolution")
    pl = np.asarray(left_info.p, np.float64)
    pr = np.asarray(right_info.p, np.float64)
    if not (pl[0] > 0 and pl[5] > 0):
        raise InputError(topics[2], "focal", f"projection matrix P has focal lengths fx={pl[0]}, fy={pl[5]}; "
                                             "need > 0 (is the camera calibrated?)")
    if not pr[0] > 0:
        raise InputError(topics[3], "focal", f"projection matrix P has focal length fx={pr[0]}; need > 0 "
                                             "(is the camera calibrated?)")
    baseline = -pr[3] / pr[0] + 0.0  # + 0.0: no '-0' in the message
    if not baseline > 0:
        raise InputError(topics[3], "baseline", f"baseline -P[3]/P[0] = {baseline:g} m; need > 0 (right camera "
                                                f"P[3] must be -fx*baseline, it is {pr[3]:g})")
    camera = StereoCamera.from_projection(pl, pr, lw, lh)
    return rgb[0], rgb[1], camera, float(pr[0])


def compute_disparity(backend: StereoBackend, left_rgb: np.ndarray, right_rgb: np.ndarray,
                      delta_cx_px: float, min_disparity: float, min_confidence: float) -> np.ndarray:
    """Network disparity at the camera resolution in DisparityImage convention; invalid = min_disparity - 1."""
    result = infer_at_image_size(backend, left_rgb, right_rgb)
    disparity, confidence = result.disparity_px, result.confidence
    # stereo_image_proc publishes x_left - x_right corrected for the principal points, so z = f*t/d.
    disparity = disparity.astype(np.float32) + np.float32(delta_cx_px)
    invalid = ~np.isfinite(disparity) | (disparity <= min_disparity) | (confidence < min_confidence)
    disparity[invalid] = np.float32(min_disparity - 1.0)
    return disparity


class StereoDepthNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        """kwargs go to rclpy Node (context, parameter_overrides, ...)."""
        super().__init__("stereo_depth_node", **kwargs)
        for name, spec in PARAMETERS.items():
            self.declare_parameter(name, spec.default, self._descriptor(name, spec))
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        for name, spec in PARAMETERS.items():
            if spec.choices and get(name) not in spec.choices:
                raise ValueError(f"parameter {name} = {get(name)!r} is not one of {spec.choices}")
        request = BackendRequest(backend=get("backend"), config=get("config"), weights=get("weights"),
                                 height=get("input_height"), width=get("input_width"),
                                 max_disparity=get("max_disparity"), engine_path=get("engine_path"),
                                 onnx_path=get("onnx_path"), threads=get("threads"), precision=get("precision"),
                                 build_engine_if_missing=get("build_engine_if_missing"),
                                 dla_core=get("dla_core"), cuda_graphs=get("cuda_graphs"))
        self.selected = create_backend(request)
        self.backend = self.selected.backend
        self.network_max_disparity = self.backend.max_disparity or self.selected.model.config.max_disparity
        self.get_logger().info(f"stereo depth: {self.selected.describe()}")
        if not self.selected.model.trained:
            self.get_logger().warning("no trained weights: the published disparity is meaningless")

        self.stats = {"sets": 0, "processed": 0, "rejected": 0, "dropped_busy": 0, "failed": 0}
        self.process_seconds = 0.0  # inference + conversions + publishing, summed over processed frames
        self._last_error: dict[tuple[str, str], float] = {}
        queue_size = get("queue_size")
        reliability = (ReliabilityPolicy.RELIABLE if get("qos_reliability") == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=queue_size, reliability=reliability)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_disparity = self.create_publisher(DisparityImage, "disparity", pub_qos)
        self.pub_points = self.create_publisher(PointCloud2, "points2", pub_qos)
        self.pub_depth = self.create_publisher(Image, "depth", pub_qos)
        self.sync = ExactTimeSync(TOPICS, queue_size, self._on_set)
        self.subscriptions_ = []
        for index, (topic, msg_type) in enumerate(zip(TOPICS, (Image, Image, CameraInfo, CameraInfo))):
            self.subscriptions_.append(self.create_subscription(
                msg_type, topic, lambda msg, i=index: self.sync.add(i, msg), sub_qos))
        self.topic_names = [s.topic_name for s in self.subscriptions_]  # resolved, for error messages

        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._stop = False
        self._worker = threading.Thread(target=self._work, name="stereo_depth_inference", daemon=True)
        self._worker.start()

    @staticmethod
    def _descriptor(name: str, spec: Param) -> ParameterDescriptor:
        kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
                 float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
        description = spec.description + (f" ({'|'.join(spec.choices)})" if spec.choices else "")
        d = ParameterDescriptor(name=name, type=kinds[type(spec.default)], description=description,
                                read_only=spec.read_only)
        if spec.int_range:
            d.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
        if spec.float_range:
            d.floating_point_range = [FloatingPointRange(from_value=spec.float_range[0],
                                                         to_value=spec.float_range[1], step=0.0)]
        return d

    def _error(self, key: tuple[str, str], message: str) -> None:
        """Throttled per (topic, problem): rclpy's own throttle is per call site, which would let one
        problem hide a different one."""
        now = time.monotonic()
        if now - self._last_error.get(key, -np.inf) >= ERROR_THROTTLE_S:
            self._last_error[key] = now
            self.get_logger().error(message)

    def _on_set(self, msgs: list[Any]) -> None:
        """A complete exact-time set (subscription thread): validate, convert, hand to the worker."""
        self.stats["sets"] += 1
        try:
            left_rgb, right_rgb, camera, f_px = check_inputs(msgs, self.topic_names)
        except InputError as error:
            self.stats["rejected"] += 1
            self._error((error.topic, error.kind), f"dropping stereo frame stamped "
                        f"{msgs[0].header.stamp.sec}.{msgs[0].header.stamp.nanosec:09d}: {error} "
                        f"({self.stats['rejected']} dropped so far)")
            return
        get = lambda name: self.get_parameter(name).value  # noqa: E731
        frame = Frame(msgs[0].header, left_rgb, right_rgb, camera, f_px, camera.baseline_m,
                      float(get("min_disparity")), float(get("min_confidence")),
                      bool(get("publish_points")), bool(get("publish_depth")))
        with self._cond:
            if self._pending is not None:
                self.stats["dropped_busy"] += 1
            self._pending = frame
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                frame, self._pending = self._pending, None
            try:
                start = time.monotonic()
                self._process(frame)
                self.process_seconds += time.monotonic() - start
                self.stats["processed"] += 1
            except Exception as error:  # noqa: BLE001 - the node must survive one bad frame
                self.stats["failed"] += 1
                self._error(("inference", type(error).__name__), f"inference failed: {error!r}")

    def _process(self, frame: Frame) -> None:
        camera = frame.camera
        disparity = compute_disparity(self.backend, frame.left_rgb, frame.right_rgb, camera.delta_cx_px,
                                      frame.min_disparity, frame.min_confidence)
        scale = camera.width / self.backend.width
        self.pub_disparity.publish(build_disparity_image(
            disparity, frame.header, frame.f_px, frame.baseline_m, frame.min_disparity,
            self.network_max_disparity * scale, DELTA_D * scale))
        if frame.publish_points or frame.publish_depth:
            # The disparity already includes the principal-point correction: project with delta_cx 0.
            points = dataclasses.replace(camera, delta_cx_px=0.0).points_from_disparity(
                disparity, frame.min_disparity)
            if frame.publish_points:
                self.pub_points.publish(build_point_cloud(points, frame.left_rgb, frame.header))
            if frame.publish_depth:
                self.pub_depth.publish(array_to_image(points[..., 2], "32FC1", frame.header))

    def destroy_node(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._worker.join(timeout=30.0)
        s = self.stats
        mean_ms = self.process_seconds / s["processed"] * 1e3 if s["processed"] else 0.0
        self.get_logger().info(
            f"{s['sets']} synchronised sets: {s['processed']} processed ({mean_ms:.0f} ms each), {s['rejected']} "
            f"rejected as invalid, {s['dropped_busy']} dropped while busy, {s['failed']} failed; "
            f"{self.sync.dropped} incomplete sets dropped by the synchroniser; messages received per topic "
            f"{dict(zip(TOPICS, self.sync.received))}")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(StereoDepthNode, "stereo_depth_node", args)


if __name__ == "__main__":
    sys.exit(main())
