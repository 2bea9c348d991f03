"""`stereo-depth demo`: the depth node on the built-in synthetic stereo camera, scored against ground truth.

Starts stereo_depth_node and stereo_source as separate processes (`python -m ...`, the same main()s
as the installed executables) talking over real DDS in their own namespace, collects the node's
output in this process for a few seconds, and writes to --out:
  demo.png      left image | predicted disparity | ground truth (same colour scale), last scored frame
  points.ply    that frame's point cloud (from points2)
  summary.json  frames, fps, latency, EPE and bad-2 %; node.log / source.log: the processes' output
Defaults suit a 2-core CPU: the fast config at a 320x256 network input (searching 64 px there, 128 px
at the camera's 640x480) on ONNX Runtime with the node's default local matching, the source at 640x480
and 3 Hz (one core does about 4 sets a second; at 5 Hz the node drops about one set in six); the node
drops frames it cannot keep up with (newest frame first), and the summary counts them.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..fileio import colourise_disparity, write_ply, write_rgb
from ..artifacts.weights import shipped_weights
from ..config import CONFIGS
from ..evaluation.dds_latency import stop_process
from ..evaluation.metrics import disparity_metrics
from ..inference.select import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_output", help="output directory")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the source publishes")
    parser.add_argument("--frames", type=int, default=0, help="publish this many frames instead of --seconds")
    # Node parameters (names as in config/stereo_depth.yaml), not the library's model arguments of tools/args.py:
    # --width/--height here are the camera's size, --input-width/--input-height the network's.
    parser.add_argument("--config", default="fast", choices=sorted(CONFIGS), help="network config")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="inference backend")
    parser.add_argument("--weights", default="", help="safetensors weights (default: the shipped ones)")
    parser.add_argument("--input-width", type=int, default=320, help="network input width (0: the config's)")
    parser.add_argument("--input-height", type=int, default=256, help="network input height (0: the config's)")
    parser.add_argument("--max-disparity", type=int, default=64, help="disparities searched at network input "
                        "resolution (0: the config's)")
    parser.add_argument("--threads", type=int, default=1, help="inference CPU threads (1: the source, the collector and "
                        "DDS need the other core)")
    parser.add_argument("--width", type=int, default=640, help="camera image width")
    parser.add_argument("--height", type=int, default=480, help="camera image height")
    parser.add_argument("--rate", type=float, default=3.0, help="source frame rate, Hz (below what one core processes)")
    parser.add_argument("--no-points", action="store_true", help="node does not publish points2 (no PLY)")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the node")


class Collector:
    """Subscribes to the source's left image and ground truth and to the node's outputs; scores each
    disparity against the ground truth of the same stamp as it arrives."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from stereo_msgs.msg import DisparityImage

        self.node = rclpy.create_node("stereo_demo_collector", namespace=namespace)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.left: dict[int, Any] = {}
        self.truth: dict[int, Any] = {}
        self.points: dict[int, Any] = {}
        self.published = 0
        self.first_published: float | None = None
        self.last_published: float | None = None
        self.results: list[dict[str, float]] = []
        self.receive_times: list[float] = []
        self.last: tuple[Any, Any, Any] | None = None  # (left, prediction, truth) messages of the last scored frame
        self.node.create_subscription(Image, "left/image_rect", self._on_left, qos)
        # Only so the source (wait_for_subscribers 2: the node and us) starts once every topic is matched.
        self.node.create_subscription(Image, "right/image_rect", lambda _: None, qos)
        self.node.create_subscription(CameraInfo, "left/camera_info", lambda _: None, qos)
        self.node.create_subscription(CameraInfo, "right/camera_info", lambda _: None, qos)
        self.node.create_subscription(DisparityImage, "ground_truth/disparity", self._keep(self.truth), qos)
        self.node.create_subscription(PointCloud2, "points2", self._keep(self.points), qos)
        self.node.create_subscription(DisparityImage, "disparity", self._on_disparity, qos)

    @staticmethod
    def _key(msg: Any) -> int:
        from ..ros.sync import stamp_key
        return stamp_key(msg)

    def _prune(self, store: dict[int, Any], keep: int = 30) -> None:
        for key in sorted(store)[:-keep]:
            del store[key]

    def _keep(self, store: dict[int, Any]):
        def callback(msg: Any) -> None:
            with self.lock:
                store[self._key(msg)] = msg
                self._prune(store)
        return callback

    def _on_left(self, msg: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.published += 1
            self.first_published = self.first_published or now
            self.last_published = now
            self.left[self._key(msg)] = msg
            self._prune(self.left)

    def _on_disparity(self, msg: Any) -> None:
        from ..image_encoding import image_to_array

        latency = time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        key = self._key(msg)
        with self.lock:
            self.receive_times.append(time.monotonic())
            truth, left = self.truth.get(key), self.left.get(key)
        result = {"latency_s": latency}
        if truth is not None:
            d, gt = image_to_array(msg.image), image_to_array(truth.image)
            valid = d > msg.min_disparity
            result["valid_fraction"] = float(valid.mean())
            if (valid & (gt > 0)).any():  # the one metrics module; the demo reports predicted pixels
                m = disparity_metrics(d, gt, gt > 0, predicted=valid)
                result["epe_px"], result["bad2_percent"] = m["epe_predicted"], m["bad2_predicted"]
            if left is not None:
                with self.lock:
                    self.last = (left, msg, truth)
        with self.lock:
            self.results.append(result)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    image = image.copy()
    cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "max": float(np.max(values))}


def run(args: argparse.Namespace) -> int:
    from ..ros.environment import apply_local_defaults

    apply_local_defaults()  # what `make demo` needs, for a plain `stereo-depth demo` too; before rclpy
    env = dict(os.environ)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ..image_encoding import image_to_array, image_to_rgb
    from ..ros.conversions import point_cloud_to_array, unpack_rgb

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trained = bool(args.weights) or shipped_weights(args.config) is not None
    if not trained:
        print(f"NOTE: no trained weights are shipped for config {args.config!r} yet: the network has RANDOM "
              "weights, so the disparity, EPE and bad-2 below are meaningless (the plumbing, fps and latency are not).")
    frames = args.frames or max(1, int(round(args.seconds * args.rate)))
    namespace = f"/stereo_demo_{os.getpid()}"  # its own topics even if another demo shares the domain
    python = [sys.executable, "-m"]
    node_cmd = python + ["ros2_stereo_depth.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
                         "-p", f"backend:={args.backend}", "-p", f"config:={args.config}",
                         "-p", f"input_width:={args.input_width}", "-p", f"input_height:={args.input_height}",
                         "-p", f"max_disparity:={args.max_disparity}", "-p", f"threads:={args.threads}",
                         "-p", f"publish_points:={'false' if args.no_points else 'true'}"] + (["-p", f"weights:={args.weights}"] if args.weights else [])
    source_cmd = python + ["ros2_stereo_depth.ros.stereo_source", "--ros-args", "-r", f"__ns:={namespace}",
                           "-p", f"width:={args.width}", "-p", f"height:={args.height}",
                           "-p", f"rate:={float(args.rate)}", "-p", f"frames:={frames}",
                           "-p", "wait_for_subscribers:=2"]  # the node and this collector see every frame
    print(f"demo: config {args.config}, network input {args.input_width or 'default'}x"
          f"{args.input_height or 'default'}, max disparity {args.max_disparity or 'default'}, backend "
          f"{args.backend}, {args.threads} threads; source {args.width}x{args.height} at {args.rate:g} Hz, "
          f"{frames} frames; namespace {namespace}, ROS_DOMAIN_ID {env.get('ROS_DOMAIN_ID', '0')}")

    rclpy.init()
    collector = Collector(namespace)
    executor = SingleThreadedExecutor()
    executor.add_node(collector.node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    node_log, source_log = open(out / "node.log", "w"), open(out / "source.log", "w")
    node_proc = subprocess.Popen(node_cmd, stdout=node_log, stderr=subprocess.STDOUT, env=env)
    source_proc = None
    try:
        print("starting stereo_depth_node (loading the network; ONNX Runtime exports the model first)...")
        started = time.monotonic()
        while collector.node.count_publishers(f"{namespace}/disparity") == 0:
            if node_proc.poll() is not None:
                raise RuntimeError(f"stereo_depth_node exited with {node_proc.returncode}; see {out / 'node.log'}:\n"
                                   + (out / "node.log").read_text()[-2000:])
            if time.monotonic() - started > args.startup_timeout:
                raise RuntimeError(f"stereo_depth_node not ready after {args.startup_timeout:g} s; see node.log")
            time.sleep(0.2)
        print(f"node ready after {time.monotonic() - started:.1f} s; publishing {frames} frames")
        source_proc = subprocess.Popen(source_cmd, stdout=source_log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60.0 + frames / args.rate * 3
        while time.monotonic() < deadline:
            with collector.lock:
                published, last = collector.published, collector.last_published
                done = len(collector.results)
            # Finished: all frames seen, and the node had 3 s after the last one to answer.
            if published >= frames and last is not None and (done >= published or time.monotonic() - last > 3.0):
                break
            if source_proc.poll() is not None and published < frames:
                raise RuntimeError(f"stereo_source exited early; see {out / 'source.log'}")
            time.sleep(0.1)
        time.sleep(0.5)  # the last points2 follows its disparity
    finally:
        if source_proc is not None:
            stop_process(source_proc)
        node_code = stop_process(node_proc)
        node_log.close()
        source_log.close()
        executor.shutdown(timeout_sec=2.0)
        collector.node.destroy_node()
        rclpy.try_shutdown()

    with collector.lock:
        results, published = list(collector.results), collector.published
        times, last, points = list(collector.receive_times), collector.last, dict(collector.points)
        span = (collector.last_published or 0) - (collector.first_published or 0)
    described = next((line.split("stereo depth: ", 1)[1].strip() for line in (out / "node.log").read_text().splitlines()
                      if "stereo depth: " in line), "unknown")
    scored = [r for r in results if "epe_px" in r]
    summary: dict[str, Any] = {
        "weights_trained": trained,
        "note": None if trained else "random weights: disparity, EPE and bad-2 are meaningless",
        "node": described,
        "config": args.config,
        "network_input": [args.input_width, args.input_height],
        "camera": [args.width, args.height],
        "source_rate_hz": args.rate,
        "frames_published": published,
        "frames_with_output": len(results),
        "frames_dropped": published - len(results),
        "source_fps": (published - 1) / span if published > 1 and span > 0 else None,
        "output_fps": (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None,
        "latency_ms": _stats([r["latency_s"] * 1e3 for r in results]),
        "epe_px": float(np.mean([r["epe_px"] for r in scored])) if scored else None,
        "bad2_percent": float(np.mean([r["bad2_percent"] for r in scored])) if scored else None,
        "valid_fraction": float(np.mean([r["valid_fraction"] for r in scored])) if scored else None,
        "node_exit_code": node_code,
    }
    if last is not None:
        left_msg, pred_msg, truth_msg = last
        left, pred, truth = image_to_rgb(left_msg), image_to_array(pred_msg.image), image_to_array(truth_msg.image)
        top = max(float(truth.max()), 1.0)  # one colour scale for prediction and truth
        panel = np.concatenate([_label(left, "left"), _label(colourise_disparity(pred, top),
                                                                "prediction" + ("" if trained else " (RANDOM weights)")),
                                _label(colourise_disparity(truth, top), "ground truth")], axis=1)
        write_rgb(out / "demo.png", panel)
        summary["png"] = str(out / "demo.png")
        cloud = points.get(Collector._key(pred_msg))
        if cloud is not None:
            xyz = point_cloud_to_array(cloud)
            count = write_ply(out / "points.ply", np.stack([xyz["x"], xyz["y"], xyz["z"]], axis=-1),
                              unpack_rgb(xyz["rgb"]))
            summary["ply"] = str(out / "points.ply")
            summary["ply_points"] = count
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, out)
    if not results:
        raise RuntimeError(f"the node produced no output; see {out / 'node.log'}")
    return 0


def _print_summary(s: dict[str, Any], out: Path) -> None:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    lat = s["latency_ms"] or {}
    print(f"node: {s['node']}")
    print(f"frames: {s['frames_published']} published at {fmt(s['source_fps'], '.2f')} fps, "
          f"{s['frames_with_output']} with output at {fmt(s['output_fps'], '.2f')} fps, "
          f"{s['frames_dropped']} dropped (node busy)")
    print(f"latency (receive time - header stamp): mean {fmt(lat.get('mean'), '.0f')} ms, "
          f"p50 {fmt(lat.get('p50'), '.0f')} ms, p95 {fmt(lat.get('p95'), '.0f')} ms")
    accuracy = (f"EPE {fmt(s['epe_px'], '.2f')} px, bad-2 {fmt(s['bad2_percent'], '.1f')} %, "
                f"valid pixels {fmt(s['valid_fraction'] and s['valid_fraction'] * 100, '.1f')} %")
    if not s["weights_trained"]:
        accuracy += "  <- RANDOM (untrained) weights: meaningless until trained weights are shipped"
    print(f"accuracy vs ground truth: {accuracy}")
    print(f"wrote {out}/summary.json" + (f", {s['png']}" if "png" in s else "")
          + (f", {s['ply']} ({s['ply_points']} points)" if "ply" in s else ""))
