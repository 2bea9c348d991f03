"""Where one stereo frame's time goes in stereo_depth_node, against OpenCV SGBM on the same frames.

Each stage calls what the node's worker calls (ros/processor.py `check_inputs` and
`StereoProcessor.process` with the node's default OutputSettings and the outputs the bench subscribes
to: disparity, the full points2 cloud in its default layout, depth; a real rclpy publisher of each message
with a subscriber in another process), on Image / CameraInfo messages built as a
camera driver sends them, so these figures follow the node's code. Only the split of `process` into
resize, inference and resize-back comes from a wrapper around the backend that notes when `infer`
starts and ends; input normalisation, which the backends do inside `infer`, is timed on the same
arrays and moved from inference to preprocessing. `matching` is the local matching after the network
(its own timing, taken out of the resize-back), `messages` the processor's own timing of the output
building (disparity image, cloud, depth).

The machine may be noisy: compare the ratio to SGBM measured in the same run, not absolute times.
"""
from __future__ import annotations

import hashlib
import resource
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from ..data.synthetic import SceneParams, SyntheticSequence
from ..inference.sgbm import sgbm_disparity
from ..inference.base import StereoBackend, StereoResult
from ..normalisation import normalise

STAGES = ("check_inputs", "preprocessing", "inference", "matching", "postprocessing", "messages", "publish")
OUTPUT_TOPICS = ("disparity", "points2", "depth")  # what the bench subscribes to, so what the node computes
# The disparity itself: the network and the local matching after it (inference/local_matching.py). Every
# other stage is node overhead (issue 11 target: <= 3 ms at 640x480).
DEPTH_STAGES = ("inference", "matching")
FX_PER_WIDTH = 0.5  # focal length = width / 2 px (90 degree field of view), as stereo_source
BASELINE_M = 0.12


def search_range(width: int, size_multiple: int) -> int:
    """Disparities searched at a network input `width`: 128 at 640 px (Aloe at half size reaches 105 px),
    proportional to the width, rounded up to the network's size multiple; SGBM searches the same."""
    return max(size_multiple, -(-round(128 * width / 640) // size_multiple) * size_multiple)


def peak_rss_mib() -> float:
    """This process's high-water resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def summarise_ms(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s, np.float64) * 1e3
    return {"mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "runs": int(ms.size)}


def synthetic_frames(width: int, height: int, count: int, max_disparity_px: float) -> list[Any]:
    """`count` different synthetic frames (left, right RGB, disparity) at the camera size."""
    sequence = SyntheticSequence(SceneParams(height, width, max_disparity_px), seed=3)
    return [sequence.frame(i) for i in range(count)]


class TimedBackend:
    """A backend that notes when its `infer` runs, so the processor's disparity splits into the
    resize before, the inference, and the resize back and validity after; normalisation of the same
    inputs is timed separately (the backends normalise inside infer)."""

    def __init__(self, backend: StereoBackend) -> None:
        self.backend = backend
        self.name, self.device = backend.name, backend.device
        self.height, self.width, self.max_disparity = backend.height, backend.width, backend.max_disparity
        self.started = self.ended = 0.0
        self.normalise_s = 0.0

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        self.started = time.perf_counter()
        result = self.backend.infer(left_rgb, right_rgb)
        self.ended = time.perf_counter()
        start = time.perf_counter()
        normalise(left_rgb), normalise(right_rgb)
        self.normalise_s = time.perf_counter() - start
        return result


@dataclass
class StageTimes:
    samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def add(self, **seconds: float) -> None:
        for stage, value in seconds.items():
            self.samples[stage].append(value)

    def summary(self) -> dict[str, dict[str, float]]:
        return {stage: summarise_ms(values) for stage, values in self.samples.items() if values}


def camera_messages(frame: Any, stamp_ns: int) -> list[Any]:
    """The node's four inputs for one synthetic frame: rgb8 images and ideal rectified camera infos."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from ..ros.conversions import array_to_image
    from ..ros.stereo_source import camera_infos

    h, w = frame.left.shape[:2]
    stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    left, right = Header(stamp=stamp, frame_id="left"), Header(stamp=stamp, frame_id="right")
    info_left, info_right = camera_infos(w, h, FX_PER_WIDTH * w, BASELINE_M, left, right)
    return [array_to_image(frame.left, "rgb8", left), array_to_image(frame.right, "rgb8", right), info_left, info_right]


def node_stages(backend: StereoBackend, frames: list[Any], publishers: dict[str, Any] | None,
                repeats: int, warmup: int, params: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Per-stage times of the node's processing of `frames` (cycled): the outputs the bench subscribes
    to (OUTPUT_TOPICS) with the node's settings for `params` (its parameter values; None: the defaults),
    published as the node publishes them. publishers: rclpy publishers by output name, or None to leave
    out the publish stage."""
    from ..ros.node import INPUTS, output_settings, parameter_values
    from ..ros.processor import StereoProcessor, check_inputs

    messages = [camera_messages(f, 10**9 * (i + 1)) for i, f in enumerate(frames)]
    timed = TimedBackend(backend)
    processor = StereoProcessor(timed, backend.max_disparity)
    settings = output_settings(parameter_values() if params is None else params)
    wanted, topics = set(OUTPUT_TOPICS), [t for t, _ in INPUTS]
    times = StageTimes()
    for run in range(warmup + repeats):
        msgs = messages[run % len(messages)]
        t0 = time.perf_counter()
        stereo, _warnings = check_inputs(msgs, topics)
        t1 = time.perf_counter()
        outputs = processor.process(stereo, settings, wanted)
        t3 = time.perf_counter()
        if publishers is not None:
            for name, msg in outputs.items():
                publishers[name].publish(msg)
        t4 = time.perf_counter()
        if run < warmup:
            continue
        if set(outputs) != wanted:
            raise RuntimeError(f"the processor built {sorted(outputs)}, not {sorted(wanted)}")
        normalise_s, disparity_end = timed.normalise_s, t1 + processor.timings_s["inference"]
        matching_s = processor.timings_s["matching"]
        times.add(check_inputs=t1 - t0, preprocessing=timed.started - t1 + normalise_s,
                  inference=max(0.0, timed.ended - timed.started - normalise_s), matching=matching_s,
                  postprocessing=max(0.0, disparity_end - timed.ended - normalise_s - matching_s),
                  messages=processor.timings_s["messages"])
        if publishers is not None:
            times.add(publish=t4 - t3)
    return times.summary()


def pairs_at(frames: list[Any], size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The frames' (left, right) at `size` (INTER_AREA, as the node shrinks camera images)."""
    import cv2

    def resize(image: np.ndarray) -> np.ndarray:
        return image if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    return [(resize(f.left), resize(f.right)) for f in frames]


def input_digest(pairs: list[tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.sha1()
    for left, right in pairs:
        digest.update(left.tobytes())
        digest.update(right.tobytes())
    return digest.hexdigest()


def time_interleaved(fns: dict[str, Callable[[np.ndarray, np.ndarray], Any]], pairs: list[tuple[np.ndarray, np.ndarray]],
                     repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Each fn(left, right) once per round on the round's pair, in alternating order, so that a load change
    on a shared machine hits every method alike and their ratio holds. `frames_sha1` names the inputs."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    items = list(fns.items())
    for r in range(warmup + repeats):
        left, right = pairs[r % len(pairs)]
        for name, fn in (items if r % 2 == 0 else items[::-1]):
            start = time.perf_counter()
            fn(left, right)
            if r >= warmup:
                samples[name].append(time.perf_counter() - start)
    digest = input_digest(pairs)
    return {name: {**summarise_ms(values), "frames_sha1": digest} for name, values in samples.items()}


def versus_sgbm(backend: StereoBackend, frames: list[Any], max_disparity: int, repeats: int,
                warmup: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """backend.infer (normalisation included) and SGBM searching the same range, interleaved on the same
    frames at the network input size -> (inference, sgbm) timings."""
    pairs = pairs_at(frames, (backend.width, backend.height))
    result = time_interleaved({"inference": backend.infer,
                               "sgbm": lambda left, right: sgbm_disparity(left, right, max_disparity)},
                              pairs, repeats, warmup)
    return result["inference"], result["sgbm"]


def stage_total_ms(stages: dict[str, dict[str, float]], which: tuple[str, ...] = STAGES) -> float:
    """Sum of the median stage times (medians: robust to a stall in one stage on a shared machine)."""
    return float(sum(stages[s]["p50_ms"] for s in which if s in stages))


def node_overhead_ms(stages: dict[str, dict[str, float]]) -> float:
    return stage_total_ms(stages, tuple(s for s in STAGES if s not in DEPTH_STAGES))
