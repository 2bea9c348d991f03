"""stereo_depth_node end to end over real DDS on loopback: a source node in this process publishes
calibrated stereo frames, the node runs in its own process (`python -m ros2_stereo_depth.ros.node`, the
installed executable's main), a collector in this process receives its outputs. Latency is receipt
time minus the header stamp, which the source sets from the system clock just before publishing.

Also the rig for the per-stage `publish` time: publishers in this process whose subscriber is a sink
in another process (`python -m ros2_stereo_depth.evaluation.dds_latency --sink NAMESPACE`), so a
publish of a message pays the inter-process transport, as the node's does.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ros.environment import PROFILE_VARIABLE
from .speed import OUTPUT_TOPICS, camera_messages

INPUT_TOPICS = ("left/image_rect", "right/image_rect", "left/camera_info", "right/camera_info")


def ros_environment() -> dict[str, str]:
    """The environment every executable of the package runs with (ros/environment.py, as `make demo` and
    `stereo-depth demo`: local discovery, Fast DDS and its profile), set in this process (before rclpy
    creates a participant) and returned for the node and sink processes."""
    from ..ros.environment import apply_local_defaults
    apply_local_defaults()
    return dict(os.environ)


def reliable_qos(depth: int = 5) -> Any:
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def output_types() -> tuple[Any, Any, Any]:
    from sensor_msgs.msg import Image, PointCloud2
    from stereo_msgs.msg import DisparityImage
    return DisparityImage, PointCloud2, Image


def peak_rss_of(pid: int) -> float | None:
    """A live process's high-water resident set in MiB (Linux VmHWM), None if unreadable."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def stop_process(proc: subprocess.Popen, timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def wait_for(condition: Any, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace")[-3000:] if proc.stdout else ""
            raise RuntimeError(f"{what}: the process exited with {proc.returncode}:\n{output}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not after {timeout_s:g} s")
        time.sleep(0.05)


class Spinner:
    """An rclpy context of our own with its executor in a thread."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.nodes: list[Any] = []
        self.started = False

    def node(self, name: str, namespace: str) -> Any:
        import rclpy
        node = rclpy.create_node(name, namespace=namespace, context=self.context)
        self.nodes.append(node)
        self.executor.add_node(node)
        if not self.started:
            self.thread.start()
            self.started = True
        return node

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for node in self.nodes:
            node.destroy_node()
        self.context.try_shutdown()


@contextlib.contextmanager
def publish_rig(namespace: str, timeout_s: float = 60.0) -> Iterator[dict[str, Any]]:
    """Publishers of OUTPUT_TOPICS by name, each matched with a reliable subscriber in a sink process."""
    env = ros_environment()
    sink = subprocess.Popen([sys.executable, "-m", "ros2_stereo_depth.evaluation.dds_latency", "--sink", namespace],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    spinner = Spinner()
    try:
        node = spinner.node("bench_publisher", namespace)
        publishers = {topic: node.create_publisher(t, topic, reliable_qos(2))
                      for t, topic in zip(output_types(), OUTPUT_TOPICS)}
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), timeout_s,
                 "the publish-stage sink did not subscribe", sink)
        yield publishers
    finally:
        spinner.close()
        stop_process(sink)


def run_sink(namespace: str) -> int:
    """Subscribes to the three outputs (reliable) and drops them, until SIGINT."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("bench_sink", namespace=namespace)
    for msg_type, topic in zip(output_types(), OUTPUT_TOPICS):
        node.create_subscription(msg_type, topic, lambda _msg: None, reliable_qos(2), raw=True)  # as Collector
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


@dataclass
class EndToEndRequest:
    config: str
    backend: str
    camera_size: tuple[int, int]  # (width, height) of the published images
    input_size: tuple[int, int]  # network input (width, height)
    max_disparity: int
    threads: int
    frames: list[Any]  # synthetic frames (left, right) at camera_size, cycled
    count: int  # frames to send
    rate_hz: float
    startup_timeout_s: float = 300.0
    params_file: str = ""  # a parameters file for the node (a preset); the fields above override it


def cdr_header_stamp_ns(serialised: bytes) -> int:
    """header.stamp of a serialised message whose first field is a std_msgs/Header (Image, PointCloud2,
    DisparityImage): after the 4-byte CDR encapsulation, int32 sec and uint32 nanosec."""
    if len(serialised) < 12 or serialised[1] not in (0, 1):
        raise ValueError(f"not a CDR-serialised message ({len(serialised)} bytes)")
    sec, nanosec = struct.unpack_from("<iI" if serialised[1] == 1 else ">iI", serialised, 4)
    return int(sec) * 10**9 + int(nanosec)


class Collector:
    """Receipt time minus header stamp per output topic, keyed by stamp; and the node's own /diagnostics
    status (its name starts with the node's namespace), which times each set inside the node.

    Raw subscriptions: the collector reads the stamp from the serialised bytes instead of deserialising a
    set's 12 MB (640x480) or 37 MB (1280x720) into Python objects (rclpy: 69 ms for one 1280x720 cloud),
    which took the 2 cores' time from the node it measures and queued the receipts behind each other;
    subscribers in C++, rviz among them, do not pay that."""

    def __init__(self, node: Any) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.lock = threading.Lock()
        self.latency_s: dict[str, dict[int, float]] = {topic: {} for topic in OUTPUT_TOPICS}
        self.subscriptions = [node.create_subscription(msg_type, topic, self._callback(topic), reliable_qos(10),
                                                       raw=True)
                              for msg_type, topic in zip(output_types(), OUTPUT_TOPICS)]
        self.node_status: dict[str, str] = {}
        prefix = node.get_namespace().rstrip("/") + "/"
        self.diagnostics = node.create_subscription(DiagnosticArray, "/diagnostics",
                                                    lambda msg: self._status(msg, prefix), 10)

    def _status(self, msg: Any, prefix: str) -> None:
        for status in msg.status:
            if status.name.startswith(prefix):
                with self.lock:
                    self.node_status = {kv.key: kv.value for kv in status.values}

    def node_timing(self) -> dict[str, Any] | None:
        """The node's last status as numbers: sets processed, and the percentiles of its work (set complete
        -> outputs published) and latency (header stamp -> outputs published) over its last 200 sets."""
        with self.lock:
            status = dict(self.node_status)
        if not status:
            return None

        def number(key: str) -> float | None:
            try:
                return float(status[key])
            except (KeyError, ValueError):  # "n/a" before the first set
                return None

        return {"processed": int(number("processed") or 0),
                **{f"{label}_ms": {f"p{q}": number(f"{label} p{q} (ms)") for q in (50, 95)}
                   for label in ("work", "latency")}}

    def matched(self) -> bool:
        return all(s.get_publisher_count() > 0 for s in self.subscriptions)

    def _callback(self, topic: str) -> Any:
        def receive(serialised: bytes) -> None:
            now_ns = time.time_ns()
            stamp_ns = cdr_header_stamp_ns(serialised)
            with self.lock:
                self.latency_s[topic][stamp_ns] = (now_ns - stamp_ns) * 1e-9
        return receive

    def received(self, topic: str) -> int:
        with self.lock:
            return len(self.latency_s[topic])


def end_to_end(request: EndToEndRequest) -> dict[str, Any]:
    """Send `count` frames at `rate_hz` through the node; latency of each output, drops, node peak RSS."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image

    from ..ros.node import DIAGNOSTICS_PERIOD_S

    env = ros_environment()
    namespace = f"/bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    (in_w, in_h) = request.input_size
    command = [sys.executable, "-m", "ros2_stereo_depth.ros.node", "--ros-args", "-r", f"__ns:={namespace}",
               *(["--params-file", request.params_file] if request.params_file else []),
               "-p", f"backend:={request.backend}", "-p", f"config:={request.config}",
               "-p", f"input_width:={in_w}", "-p", f"input_height:={in_h}",
               "-p", f"max_disparity:={request.max_disparity}", "-p", f"threads:={request.threads}",
               "-p", "qos_reliability:=reliable", "-p", "publish_points:=true", "-p", "publish_depth:=true"]
    node_proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    spinner = Spinner()
    try:
        source = spinner.node("bench_source", namespace)
        publishers = [source.create_publisher(t, topic, reliable_qos(5))
                      for t, topic in zip((Image, Image, CameraInfo, CameraInfo), INPUT_TOPICS)]
        collector = Collector(spinner.node("bench_collector", namespace))
        started = time.monotonic()
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                 and source.count_publishers(f"{namespace}/depth") > 0, request.startup_timeout_s,
                 "stereo_depth_node did not come up", node_proc)
        startup_s = time.monotonic() - started
        messages = [camera_messages(f, 0) for f in request.frames]

        def send(index: int) -> int:
            stamp_ns = time.time_ns()
            stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
            msgs = messages[index % len(messages)]
            for publisher, msg in zip(publishers, msgs):
                msg.header.stamp = stamp
                publisher.publish(msg)
            return stamp_ns

        wait_for(collector.matched, request.startup_timeout_s, "the node's outputs did not match", node_proc)
        # Warm-up (the first inference allocates): one frame, answered on every output.
        send(0)
        wait_for(lambda: all(collector.received(t) > 0 for t in OUTPUT_TOPICS), 120.0,
                 "no output for the warm-up frame", node_proc)
        with collector.lock:
            for store in collector.latency_s.values():
                store.clear()
        period = 1.0 / request.rate_hz
        stamps = []
        next_time = time.monotonic()
        for i in range(request.count):
            next_time += period
            stamps.append(send(i + 1))
            time.sleep(max(0.0, next_time - time.monotonic()))
        # The node drops a set that arrives while one waits: wait for the rest, not for ever.
        deadline = time.monotonic() + 5.0 + 3 * period
        while min(collector.received(t) for t in OUTPUT_TOPICS) < request.count and time.monotonic() < deadline:
            time.sleep(0.05)
        # Then for a status that counts every set answered (the warm-up one too): published once a second.
        answered = 1 + min(collector.received(t) for t in OUTPUT_TOPICS)
        deadline = time.monotonic() + 2.5 * DIAGNOSTICS_PERIOD_S
        while time.monotonic() < deadline and (collector.node_timing() or {}).get("processed", 0) < answered:
            time.sleep(0.05)
    finally:
        rss = peak_rss_of(node_proc.pid)
        stop_process(node_proc)
        spinner.close()
    with collector.lock:
        latency = {topic: [store[s] for s in stamps if s in store] for topic, store in collector.latency_s.items()}
    full = [max(collector.latency_s[t][s] for t in OUTPUT_TOPICS) for s in stamps
            if all(s in collector.latency_s[t] for t in OUTPUT_TOPICS)]
    return {"config": request.config, "backend": request.backend,
            "camera": f"{request.camera_size[0]}x{request.camera_size[1]}", "input": f"{in_w}x{in_h}",
            "max_disparity": request.max_disparity, "threads": request.threads, "rate_hz": request.rate_hz,
            "sent": request.count, "received": {t: len(v) for t, v in latency.items()},
            "dropped": request.count - len(full),
            "latency_ms": {t: _stats(v) for t, v in latency.items()}, "frame_latency_ms": _stats(full),
            "node_peak_rss_mib": rss, "node_startup_s": startup_s, "dds_profile": env.get(PROFILE_VARIABLE, ""),
            # In the node itself, over these sets and the warm-up one (its percentiles, not ours).
            "node_timing": collector.node_timing()}


def _stats(values_s: list[float]) -> dict[str, float] | None:
    if not values_s:
        return None
    ms = np.asarray(values_s) * 1e3
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "max": float(ms.max())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the subscriber end of the publish-stage timing")
    parser.add_argument("--sink", required=True, metavar="NAMESPACE")
    sys.exit(run_sink(parser.parse_args().sink))
