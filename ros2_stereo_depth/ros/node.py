"""`stereo_depth_node` and `stereo_depth_lifecycle_node`: rectified stereo images + camera infos ->
DisparityImage, PointCloud2, depth, confidence, colour-mapped disparity; health on /diagnostics.

A thin ROS shell over `processor.StereoProcessor` (as stereo_image_proc). Subscribes (relative names,
so namespaces and remappings work): left/image_rect, right/image_rect (mono8, rgb8, bgr8, rgba8, bgra8),
left/camera_info, right/camera_info, and left/image_rect_color (optional: the cloud's colour when
published). Publishes disparity, points2, depth, confidence, disparity/image_color; an output is computed
only while it has a subscriber, and nothing is inferred while no output has one.

QoS: subscriptions are BEST_EFFORT by default (`qos_reliability`), stereo_image_proc's sensor-data
default, which matches reliable and best-effort publishers; publishers are RELIABLE. Every topic takes
`qos_overrides./<topic>.<publisher|subscription>.<policy>` parameters. Large images need the Fast DDS
profile that `environment.apply_dds_defaults` installs (README "DDS settings").

Threads: the executor's callbacks only pair, check and convert messages; inference runs in a worker
thread on the newest complete set. A set arriving while one is still waiting is dropped (counted): a
depth stream wants the newest frame, not a growing backlog. Invalid sets are refused before they can
displace a valid one.

Online adaptation (`adapt: true`, torch backend only): every processed pair is also offered to
training/online.py's OnlineAdapter, whose own thread fine-tunes a private copy of the network,
self-supervised, and swaps the improved weights into the backend (see there); /diagnostics reports it.
"""
from __future__ import annotations

import copy
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_system_default
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from stereo_msgs.msg import DisparityImage

from ..config import ENGINE_PRECISIONS
from ..image_encoding import ImageError, image_to_rgb
from ..inference.local_matching import MAX_MATCH_WIDTH_PX, MAX_RADIUS_PX, LocalMatching
from ..inference.select import BACKENDS, BackendRequest, create_backend
from .approximate_sync import ApproximateTimeSync
from .health import Health, Throttle, adaptation_values
from .params import Param, ParameterError, declare_parameters, read_params_file
from .processor import OUTPUTS, InputError, OutputSettings, StereoProcessor, StereoSet, check_inputs
from .spin import run_node
from .sync import ExactTimeSync, stamp_key

if TYPE_CHECKING:
    from ..training.online import OnlineAdapter

INPUTS = (("left/image_rect", Image), ("right/image_rect", Image),
          ("left/camera_info", CameraInfo), ("right/camera_info", CameraInfo))
COLOUR_TOPIC = "left/image_rect_color"
OUTPUT_TYPES = {"disparity": DisparityImage, "points2": PointCloud2, "depth": Image, "confidence": Image,
                "disparity/image_color": Image}
ERROR_THROTTLE_S = 5.0  # one error per topic and problem in this period
DIAGNOSTICS_PERIOD_S = 1.0

# Names, defaults and meanings follow stereo_image_proc where they overlap (queue_size, approximate_sync,
# approximate_sync_tolerance_seconds, use_system_default_qos, min_disparity, use_color,
# avoid_point_cloud_padding). config/stereo_depth.yaml holds the same defaults (a test keeps them equal).
PARAMETERS: dict[str, Param] = {
    "backend": Param("auto", "inference backend: auto (TensorRT when an engine is valid, else ONNX Runtime), "
                     "tensorrt, onnxruntime or torch", choices=BACKENDS),
    "config": Param("fast", "network config name: tiny, fast or accurate"),
    "weights": Param("", "safetensors weights file; empty: the weights shipped for `config`"),
    "engine_path": Param("", "TensorRT engine; empty: $ROS_HOME/stereo_depth/engines/"
                         "<config>_<W>x<H>_d<D>_<precision>.engine"),
    "build_engine_if_missing": Param(False, "with TensorRT present: build a missing or stale engine at "
                                     "engine_path once (minutes) and cache it"),
    "dla_core": Param(-1, "Jetson DLA core the engine is built for; -1: GPU only", -1, 7),
    "cuda_graphs": Param(False, "tensorrt / torch on CUDA: replay a captured CUDA graph after the first frame"),
    "onnx_path": Param("", "ONNX model for onnxruntime; empty: exported from the weights and cached"),
    "precision": Param("fp16", "TensorRT engine / CUDA torch precision", choices=ENGINE_PRECISIONS),
    "input_width": Param(0, "network input width in pixels (images are resized to it); 0: the config's", 0, 4096),
    "input_height": Param(0, "network input height in pixels; 0: the config's", 0, 4096),
    "max_disparity": Param(0, "disparities searched at the network input resolution; 0: the config's", 0, 1024),
    "threads": Param(0, "CPU threads for inference (the network on CPU and the local matching); 0: the library "
                     "default", 0, 256),
    "queue_size": Param(5, "messages kept per topic by the synchroniser, and the subscription depth", 1, 100),
    "approximate_sync": Param(False, "pair messages by nearest stamps instead of equal stamps"),
    "approximate_sync_tolerance_seconds": Param(0.0, "approximate_sync: largest stamp difference within a set; "
                                                "0: no limit", 0.0, 10.0),
    "use_system_default_qos": Param(False, "subscribe with the RMW's default QoS (as rclcpp::SystemDefaultsQoS) "
                                    "instead of qos_reliability"),
    "qos_reliability": Param("best_effort", "subscription reliability: best_effort (matches reliable and "
                             "best-effort publishers) or reliable (only reliable publishers)",
                             choices=("best_effort", "reliable")),
    "min_disparity": Param(0.0, "disparities (px, camera resolution) at or below this are invalid",
                           -1024.0, 1024.0, read_only=False),
    "min_confidence": Param(0.0, "pixels whose network confidence is below this are invalid (0: keep all)",
                            0.0, 1.0, read_only=False),
    "match_radius_px": Param(LocalMatching().radius_px, "local matching around the network's disparity, at the "
                             "first matching level (match_width_px): search +- this many px (and +- half that "
                             "around its local max and min: the sides of a blurred depth edge; census, 9x9 "
                             "window); 0: the network alone",
                             0, MAX_RADIUS_PX, read_only=False),
    "match_camera_radius_px": Param(LocalMatching().camera_radius_px, "then, when the camera is larger than that, "
                                    "+- this many px at the camera resolution; 0: off",
                                    0, MAX_RADIUS_PX, read_only=False),
    "match_sgbm": Param(LocalMatching().sgbm, "at the first matching level, take OpenCV SGBM's matches where they pass "
                        "the census gate and fill the holes beside depth edges from the background (false: the "
                        "network and the census matching only)", read_only=False),
    "match_width_px": Param(LocalMatching().width_px, "width (px) of the first matching level, at the camera's aspect "
                            "ratio (the camera's own size when it is at most 1.25x as wide); 0: the network input's "
                            "width, or a 2.5th of the camera's when that is wider. Wider: more precise and slower",
                            0, MAX_MATCH_WIDTH_PX, read_only=False),
    "match_edges": Param(LocalMatching().edges, "last, at the camera resolution: each pixel beside a depth edge takes "
                         "the side whose colour-weighted match is better (sharper outlines; about 20 ms at 640x480 "
                         "on 2 cores)", read_only=False),
    "use_color": Param(True, "points2 carries an rgb field (from left/image_rect_color when published, "
                       "else left/image_rect)", read_only=False),
    "avoid_point_cloud_padding": Param(False, "points2 packed (x y z rgb, 16 bytes) instead of stereo_image_proc's "
                                       "aligned layout (rgb at 16, 32 bytes)", read_only=False),
    "publish_points": Param(True, "publish points2 (while subscribed)", read_only=False),
    "publish_depth": Param(True, "publish depth (32FC1, metres; while subscribed)", read_only=False),
    "adapt": Param(False, "backend torch only: fine-tune the network online on the frames it sees (self-supervised, "
                   "no labels) in a background thread and swap the improved weights in"),
    "adapt_lr": Param(1e-4, "adapt: learning rate of the online steps (AdamW)", 1e-7, 1e-2),
    "adapt_max_steps_per_s": Param(1.0, "adapt: at most this many adaptation steps a second (each needs a new "
                                   "frame); bounds the CPU/GPU time taken from inference", 0.01, 100.0),
    "adapted_weights_path": Param("", "adapt: write the adapted weights here (.safetensors + sidecar, for "
                                  "`stereo-depth build-engine --weights`) every adapt_save_every steps and at "
                                  "shutdown; empty: not saved"),
    "adapt_save_every": Param(100, "adapt: save adapted_weights_path every this many steps", 1, 1_000_000),
    "adapt_frames_per_step": Param(2, "adapt: pairs per step, the newest and older ones from the last 8", 1, 8),
    "adapt_photometric_scales": Param(1, "adapt: photometric loss over this many scales (1: full size; 3: also "
                                      "the images pooled by 2 and 4, which averages sensor noise away)", 1, 3),
    "adapt_check_every": Param(50, "adapt: every this many steps (and before each save) score the adapted and the "
                               "starting weights label-free on the newest pairs; adapted weights with a higher "
                               "photometric error or under a quarter of the disparity spread are replaced by the "
                               "last that passed (3 failures in a row stop adaptation); 0: never checked",
                               0, 1_000_000),
}


def check_adaptation(params: Mapping[str, Any]) -> None:
    """The adapt parameters against the others: ParameterError naming the parameter (one line at start-up)."""
    if not params["adapt"]:
        return
    if params["backend"] != "torch":
        raise ParameterError(f"parameter adapt = True is not allowed with backend {params['backend']}: online "
                             "adaptation trains the PyTorch network, use backend torch")
    if params["cuda_graphs"]:
        raise ParameterError("parameter adapt = True is not allowed with cuda_graphs = True: a captured CUDA graph "
                             "would keep replaying the old weights")
    path = params["adapted_weights_path"]
    if path and not path.endswith(".safetensors"):
        raise ParameterError(f"parameter adapted_weights_path = {path!r} is not allowed: use a .safetensors path")


def parameter_values(params_file: str = "") -> dict[str, Any]:
    """The node's parameter values without rclpy: the defaults, overlaid by `params_file` (checked, as
    `--params-file` would set them; e.g. config/stereo_depth_cpu.yaml) when one is given."""
    values = {name: param.default for name, param in PARAMETERS.items()}
    if params_file:
        values.update(read_params_file(params_file, PARAMETERS))
    return values


def output_settings(params: Mapping[str, Any]) -> OutputSettings:
    """The processor's settings from the node's parameter values (the bench passes the defaults)."""
    return OutputSettings(params["min_disparity"], params["min_confidence"], params["use_color"],
                          params["avoid_point_cloud_padding"],
                          LocalMatching(params["match_radius_px"], params["match_camera_radius_px"], params["threads"],
                                        params["match_sgbm"], params["match_width_px"], params["match_edges"]))


class StereoDepthPipeline:
    """Everything both node variants share; `node` is an rclpy Node or LifecycleNode. Stages:
    configure (load the backend), activate (publishers, subscriptions, worker, diagnostics),
    deactivate (undo activate), cleanup (free the backend)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.params = declare_parameters(node, PARAMETERS)
        self.processor: StereoProcessor | None = None
        self.adapter: OnlineAdapter | None = None
        self.backend_info: dict[str, str] = {}
        self.health = Health([t for t, _ in INPUTS])
        self.throttle = Throttle(ERROR_THROTTLE_S)
        self.pubs: dict[str, Any] = {}
        self.subs: list[Any] = []
        self.sync: Any = None
        self.topic_names: list[str] = [t for t, _ in INPUTS]
        self.colour: dict[int, Any] = {}  # stamp -> left/image_rect_color message (newest few)
        self.cond = threading.Condition()
        self.pending: StereoSet | None = None
        self.worker: threading.Thread | None = None
        self.stopping = False
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.diagnostics_timer: Any = None

    # -- lifecycle stages --------------------------------------------------------------------------
    def configure(self) -> None:
        p = self.params
        check_adaptation(p)
        request = BackendRequest(backend=p["backend"], config=p["config"], weights=p["weights"],
                                 height=p["input_height"], width=p["input_width"], max_disparity=p["max_disparity"],
                                 engine_path=p["engine_path"], onnx_path=p["onnx_path"], threads=p["threads"],
                                 precision=p["precision"], build_engine_if_missing=p["build_engine_if_missing"],
                                 dla_core=p["dla_core"], cuda_graphs=p["cuda_graphs"])
        try:
            selected = create_backend(request)
        except Exception as error:
            # One line that says what was being loaded: the libraries' own messages rarely name the file.
            raise RuntimeError(f"cannot load backend {p['backend']} for config {p['config']} with weights "
                               f"{p['weights'] or '(shipped)'}: {type(error).__name__}: {error}") from error
        backend = selected.backend
        self.processor = StereoProcessor(backend, backend.max_disparity or selected.weights.config.max_disparity)
        self.backend_info = {"backend": backend.name, "device": backend.device, "precision": p["precision"]
                             if backend.name in ("tensorrt", "torch") and backend.device != "cpu" else "fp32",
                             "network input": f"{backend.width}x{backend.height}",
                             "max disparity (network px)": str(self.processor.network_max_disparity)}
        self.node.get_logger().info(f"stereo depth: {selected.describe()}")
        matching = output_settings(p).matching
        if matching.enabled:
            # The matching runs on the CPU (NumPy, OpenCV, compiled C loops): next to a GPU network it sets the frame rate.
            level_width = f"{p['match_width_px']} px" if p["match_width_px"] else "the network input's"
            self.node.get_logger().info(
                f"local matching on the CPU after the network: +-{p['match_radius_px']} px at {level_width} width, "
                f"+-{p['match_camera_radius_px']} px at the camera resolution, SGBM fusion "
                f"{'on' if p['match_sgbm'] else 'off'}, edge sides {'on' if p['match_edges'] else 'off'} "
                "(on 2 x86 cores, 640x480: about 150 ms with the defaults, "
                "20 ms with the SGBM fusion alone as config/stereo_depth_cpu.yaml sets it); "
                "match_radius_px:=0 match_camera_radius_px:=0 match_sgbm:=false match_edges:=false "
                "for the network alone" +
                ("; the network runs on a GPU, so the matching dominates the time per set" if backend.device != "cpu" else ""))
            matching.load_compiled()
        if not selected.weights.trained:
            self.node.get_logger().warning("no trained weights: the published disparity is meaningless")
        if p["adapt"]:
            # torch only with adapt on: a node on ONNX Runtime or TensorRT never imports it (~200 MiB).
            from ..training.online import AdaptSettings, OnlineAdapter

            settings = AdaptSettings(lr=p["adapt_lr"], max_steps_per_s=p["adapt_max_steps_per_s"],
                                     frames_per_step=p["adapt_frames_per_step"],
                                     photometric_scales=p["adapt_photometric_scales"],
                                     save_path=p["adapted_weights_path"], save_every=p["adapt_save_every"],
                                     check_every=p["adapt_check_every"])
            self.adapter = OnlineAdapter(backend.net, backend.height, backend.width, settings, backend.replace_net,
                                         report=self.node.get_logger().error,
                                         info={"adapted_from": str(selected.weights.weights_path or "random")})
            self.node.get_logger().info(
                f"online adaptation on: at most {settings.max_steps_per_s:g} steps/s, lr {settings.lr:g}, "
                f"{settings.frames_per_step} pairs a step, {settings.photometric_scales} photometric scale(s), "
                + (f"checked every {settings.check_every} steps, " if settings.check_every else "never checked, ")
                + "weights "
                + (f"saved to {settings.save_path} every {settings.save_every} steps and at shutdown"
                   if settings.save_path else "not saved (adapted_weights_path is empty)"))

    def activate(self) -> None:
        p, node = self.params, self.node
        overrides = QoSOverridingOptions.with_default_policies()
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
        # copy.copy per entity: rclpy applies qos_overrides to the profile object it is given, in place.
        self.pubs = {name: node.create_publisher(OUTPUT_TYPES[name], name, copy.copy(pub_qos),
                                                 qos_overriding_options=overrides) for name in OUTPUTS}
        if p["use_system_default_qos"]:
            sub_qos = QoSProfile(**{k: getattr(qos_profile_system_default, k) for k in ("history", "reliability",
                                                                                           "durability")},
                                 depth=p["queue_size"])
        else:
            sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=p["queue_size"],
                                 reliability=ReliabilityPolicy.RELIABLE if p["qos_reliability"] == "reliable"
                                 else ReliabilityPolicy.BEST_EFFORT)
        topics = [t for t, _ in INPUTS]
        if p["approximate_sync"]:
            self.sync = ApproximateTimeSync(topics, p["queue_size"], self._on_set,
                                            p["approximate_sync_tolerance_seconds"])
        else:
            self.sync = ExactTimeSync(topics, p["queue_size"], self._on_set)
        self.subs = [node.create_subscription(msg_type, topic, lambda msg, i=i, t=topic: self._on_message(i, t, msg),
                                              copy.copy(sub_qos), qos_overriding_options=overrides)
                     for i, (topic, msg_type) in enumerate(INPUTS)]
        self.subs.append(node.create_subscription(Image, COLOUR_TOPIC, self._on_colour, copy.copy(sub_qos),
                                                  qos_overriding_options=overrides))
        self.topic_names = [s.topic_name for s in self.subs]  # resolved, for messages
        self.stopping, self.pending = False, None
        self.worker = threading.Thread(target=self._work, name="stereo_depth_inference", daemon=True)
        self.worker.start()
        if self.adapter is not None:
            self.adapter.start()
        self.diagnostics_timer = node.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics)

    def deactivate(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.worker is not None:
            self.worker.join(timeout=30.0)
            self.worker = None
        if self.adapter is not None:
            saved = self.adapter.stop()
            if saved is not None:
                self.node.get_logger().info(f"adapted weights ({self.adapter.stats().steps} steps) saved to {saved}")
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        for pub in self.pubs.values():
            self.node.destroy_publisher(pub)
        if self.diagnostics_timer is not None:
            self.node.destroy_timer(self.diagnostics_timer)
        self.subs, self.pubs, self.diagnostics_timer, self.pending = [], {}, None, None

    def cleanup(self) -> None:
        self.processor = None  # the backend (and its memory) goes with it
        self.adapter = None
        self.backend_info = {}

    def summary(self) -> str:
        h = self.health
        with h.lock:
            c, refused = dict(h.counts), sum(h.refused.values())
            work = sorted(h.work_s)
            received = {t: h.received[t] for t in h.topics}
        mean_ms = sum(work) / len(work) * 1e3 if work else 0.0
        return (f"{c.get('sets', 0)} synchronised sets: {c.get('processed', 0)} processed ({mean_ms:.0f} ms each), "
                f"{refused} refused as invalid, {c.get('dropped_busy', 0)} dropped while busy, "
                f"{c.get('idle', 0)} skipped with no subscriber, {c.get('failed', 0)} failed; "
                f"{getattr(self.sync, 'dropped', 0)} unpaired messages/sets dropped by the synchroniser; "
                f"messages received per topic {received}")

    # -- callbacks -----------------------------------------------------------------------------------
    def _on_message(self, index: int, topic: str, msg: Any) -> None:
        self.health.message(topic)
        self.sync.add(index, msg)

    def _on_colour(self, msg: Any) -> None:
        with self.cond:
            self.colour[stamp_key(msg)] = msg
            while len(self.colour) > self.params["queue_size"]:
                del self.colour[min(self.colour)]

    def _problem(self, topic: str, kind: str, text: str, error: bool = True) -> None:
        (self.health.refuse if error else self.health.warn)(topic, kind)
        if not self.throttle((topic, kind)):
            return
        if error:  # two call sites: rclpy refuses one call site with two severities
            self.node.get_logger().error(text)
        else:
            self.node.get_logger().warning(text)

    def _wanted(self) -> set[str]:
        p = self.params
        wanted = {name for name, pub in self.pubs.items() if pub.get_subscription_count() > 0}
        if not p["publish_points"]:
            wanted.discard("points2")
        if not p["publish_depth"]:
            wanted.discard("depth")
        return wanted

    def _on_set(self, msgs: list[Any]) -> None:
        """A complete set (executor thread): check, convert, hand to the worker."""
        complete_s = time.monotonic()
        self.health.count("sets")
        if not self._wanted():
            self.health.count("idle")  # lazy: nobody listens, so no conversion and no inference
            return
        stamp = msgs[0].header.stamp
        try:
            stereo, warnings = check_inputs(msgs, self.topic_names)
        except InputError as error:
            self._problem(error.topic, error.kind, f"dropping stereo frame stamped {stamp.sec}.{stamp.nanosec:09d}: "
                          f"{error} ({self.health.refused[f'{error.topic}: {error.kind}'] + 1} such so far)")
            return
        for topic, kind, text in warnings:
            self._problem(topic, kind, f"{topic}: {text}", error=False)
        stereo.complete_s = complete_s
        with self.cond:
            if self.pending is not None:
                self.health.count("dropped_busy")
            self.pending = stereo
            self.cond.notify()

    def _colour_for(self, stereo: StereoSet) -> None:
        with self.cond:
            msg = self.colour.get(stamp_key(stereo))  # the left image's stamp
        if msg is None:
            return
        try:
            rgb = image_to_rgb(msg)
        except ImageError as error:
            self._problem(self.topic_names[4], error.kind, f"{self.topic_names[4]}: {error}; colouring the cloud "
                          "from the left image")
            return
        if rgb.shape != stereo.left_rgb.shape:
            self._problem(self.topic_names[4], "size", f"{self.topic_names[4]}: image is {rgb.shape[1]}x"
                          f"{rgb.shape[0]}, not the left image's size; colouring the cloud from the left image")
            return
        stereo.colour_rgb = rgb

    def _work(self) -> None:
        while True:
            with self.cond:
                while self.pending is None and not self.stopping:
                    self.cond.wait()
                if self.stopping:
                    return
                stereo, self.pending = self.pending, None
            processor = self.processor
            try:
                p = self.params
                settings = output_settings(p)
                wanted = self._wanted()
                if "points2" in wanted and settings.use_color:
                    self._colour_for(stereo)
                outputs = processor.process(stereo, settings, wanted)
                for name in list(outputs):  # in the processor's order
                    # The message itself: rclpy copies its array.array data with one memcpy (conversions.py
                    # attach_data). Serialising it ourselves and publishing the bytes was slower (pybind and
                    # Fast DDS copy the bytes again: 640x480 cloud 16-19 against 8-9 ms to a subscriber in
                    # another process) and held 15-43 MiB more at peak (the CPU preset end to end).
                    self.pubs[name].publish(outputs.pop(name))
                if self.adapter is not None:  # after publishing: adaptation never delays a frame
                    self.adapter.offer(stereo.left_rgb, stereo.right_rgb)
                stamp = stereo.header.stamp
                self.health.processed(time.time() - (stamp.sec + stamp.nanosec * 1e-9),
                                      time.monotonic() - stereo.complete_s)
            except Exception as error:  # noqa: BLE001 - the node must survive one bad frame
                self.health.count("failed")
                self._problem("inference", type(error).__name__, f"processing failed: {error!r}")

    def publish_diagnostics(self) -> None:
        values = dict(self.backend_info)
        if self.adapter is not None:
            values.update(adaptation_values(self.adapter.stats()))
        status = self.health.status(f"{self.node.get_fully_qualified_name()}: stereo depth",
                                    self.backend_info.get("device", ""), values,
                                    getattr(self.sync, "dropped", 0), active=bool(self.subs))
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)


class PipelineOwner:
    """What both node classes add to their rclpy base (listed first, so destroy_node runs here first)."""

    pipeline: StereoDepthPipeline

    @property
    def health(self) -> Health:
        return self.pipeline.health

    def destroy_node(self) -> None:
        pipeline = getattr(self, "pipeline", None)  # None when __init__ failed half-way
        if pipeline is not None and pipeline.sync is not None:  # it ran: say what it did
            pipeline.deactivate()
            pipeline.node.get_logger().info(pipeline.summary())
        super().destroy_node()  # type: ignore[misc]


class StereoDepthNode(PipelineOwner, Node):
    def __init__(self, **kwargs: Any) -> None:
        """kwargs go to rclpy Node (context, parameter_overrides, ...)."""
        super().__init__("stereo_depth_node", **kwargs)
        self.pipeline = StereoDepthPipeline(self)
        self.pipeline.configure()
        self.pipeline.activate()


def main(args: list[str] | None = None) -> int:
    return run_node(StereoDepthNode, "stereo_depth_node", args)


if __name__ == "__main__":
    sys.exit(main())
