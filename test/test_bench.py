"""`stereo-depth bench`: stage times that add up to what the node really takes, SGBM on the same frames,
missing backends reported, and plausible numbers in the JSON and chart."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros2_stereo_depth.cli import main
from ros2_stereo_depth.evaluation.speed import STAGES, node_stages, stage_total_ms, synthetic_frames, versus_sgbm
from ros2_stereo_depth.inference.base import StereoResult
from ros2_stereo_depth.normalisation import normalise

INFER_S = 0.06
CPU_PRESET = Path(__file__).resolve().parents[1] / "config" / "stereo_depth_cpu.yaml"


class SleepingBackend:
    """A backend whose inference takes a known time (sleeping frees the core, so load barely changes it)
    and returns a constant disparity: the stage split must put that time in `inference`."""

    name, device, height, width, max_disparity = "sleep", "cpu", 96, 128, 32

    def infer(self, left_rgb: np.ndarray, right_rgb: np.ndarray) -> StereoResult:
        assert left_rgb.shape == (self.height, self.width, 3)  # the processor resized the 160x120 camera images
        normalise(left_rgb), normalise(right_rgb)  # as every real backend does inside infer
        time.sleep(INFER_S)
        return StereoResult(np.full((self.height, self.width), 8.0, np.float32), np.ones((self.height, self.width), np.float32))


def test_stage_split_attributes_inference_time_to_inference():
    frames = synthetic_frames(160, 120, 2, 20.0)
    stages = node_stages(SleepingBackend(), frames, None, repeats=4, warmup=1)
    assert set(stages) == set(STAGES) - {"publish"}
    inference = stages["inference"]["p50_ms"]
    # normalisation, timed apart on the same arrays, moves from inference to preprocessing: +-5 ms of noise
    assert INFER_S * 1e3 - 5.0 <= inference < INFER_S * 1e3 + 40.0
    assert stages["matching"]["p50_ms"] > 0.0  # the local matching after the network, timed apart
    others = stage_total_ms(stages) - inference - stages["matching"]["p50_ms"]
    assert 0.0 < others < 40.0  # 160x120 conversions, resizes and cloud: a few ms even on a busy machine
    assert all(stages[s]["p50_ms"] > 0.0 for s in ("check_inputs", "preprocessing", "messages"))


def test_sgbm_is_timed_interleaved_on_the_same_frames_at_the_network_size():
    frames = synthetic_frames(160, 120, 2, 20.0)
    inference, sgbm = versus_sgbm(SleepingBackend(), frames, 32, repeats=4, warmup=1)
    assert inference["runs"] == sgbm["runs"] == 4
    assert INFER_S * 1e3 <= inference["p50_ms"] < INFER_S * 1e3 + 40.0  # infer's own time, normalisation included
    assert 0.0 < sgbm["p50_ms"] < 30.0  # SGBM on 128x96 with 32 disparities, not on the 160x120 frames' time
    assert inference["frames_sha1"] == sgbm["frames_sha1"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--configs", "tiny", "--backends", "onnxruntime", "tensorrt", "--sizes", "320x240",
                 "--threads", "1", "--repeats", "3", "--warmup", "1", "--e2e-frames", "4", "--no-overload",
                 "--chart-sizes", "128x96", "--chart", str(out / "chart.png"), "--json", str(out / "bench.json"),
                 "--presets", str(CPU_PRESET)])
    assert code == 0
    return json.loads((out / "bench.json").read_text()), out


@pytest.mark.dds
@pytest.mark.export
def test_bench_json_has_plausible_figures_and_reports_missing_backends(report):
    data, _ = report
    rows = {row["backend"]: row for row in data["sizes"][0]["rows"]}
    assert "tensorrt" in rows["tensorrt"]["skipped"].lower()
    row = rows["onnxruntime"]
    assert row["input"] == "256x192" and row["max_disparity"] == 64
    assert 1.0 < row["inference"]["p50_ms"] < 5000.0 and 0.1 < row["sgbm"]["p50_ms"] < 1000.0
    assert row["inference"]["runs"] == row["sgbm"]["runs"] == 3
    # SGBM ran on exactly the frames the network ran on.
    assert row["sgbm"]["frames_sha1"] == row["inference"]["frames_sha1"]
    assert row["x_sgbm_time"] == pytest.approx(row["inference"]["p50_ms"] / row["sgbm"]["p50_ms"])
    assert set(row["stages"]) == set(STAGES)
    assert all(row["stages"][s]["p50_ms"] > 0.0 for s in STAGES)
    assert 0.0 < row["node_overhead_ms"] < row["stage_total_ms"]
    assert 100.0 < data["bench_peak_rss_mib"] < 8000.0


@pytest.mark.dds
@pytest.mark.export
def test_stage_sum_matches_end_to_end_latency_through_dds(report):
    data, _ = report
    row = next(r for r in data["sizes"][0]["rows"] if r["backend"] == "onnxruntime")
    e2e = row["end_to_end_below_capacity"]
    assert e2e["sent"] == 4 and e2e["received"]["disparity"] >= 3
    # The node in another process, fed over DDS, takes about what the stages add up to: more (transport,
    # the source's publish, scheduling on a shared machine), but not several times more, and not less
    # than the network alone.
    latency, total = e2e["frame_latency_ms"]["p50"], row["stage_total_ms"]
    assert 0.7 * row["stages"]["inference"]["p50_ms"] < latency < 2.0 * total + 60.0
    assert 100.0 < e2e["node_peak_rss_mib"] < 8000.0  # the node process's VmHWM, not ours
    assert e2e["dds_profile"].endswith("fastdds_profile.xml")
    # The node's own status, read from /diagnostics: every set answered (the warm-up one too) counted; its
    # work (set complete -> published) within its latency (stamp -> published), which the collector's
    # receipt follows; the work includes the network.
    timing = e2e["node_timing"]
    complete = e2e["sent"] - e2e["dropped"]
    assert timing["processed"] >= 1 + complete
    work, node_latency = timing["work_ms"]["p50"], timing["latency_ms"]["p50"]
    assert 0.7 * row["stages"]["inference"]["p50_ms"] < work <= node_latency <= latency + 20.0
    assert timing["work_ms"]["p95"] >= work
    from ros2_stereo_depth.evaluation.bench_report import markdown
    rows = [line for line in markdown(data).splitlines() if line.startswith(f"| {row['config']} | onnxruntime | ")
            and line.count("|") == 8]
    assert rows and rows[0].split(" | ")[4] == f"{work:.0f} / {timing['work_ms']['p95']:.0f}"


@pytest.mark.dds
@pytest.mark.export
def test_chart_points_and_png(report):
    data, out = report
    sgbm, tiny = data["chart"]["OpenCV SGBM"], data["chart"]["tiny on onnxruntime"]
    matched = data["chart"]["tiny + matching on onnxruntime"]
    assert [p["size"] for p in sgbm] == [p["size"] for p in tiny] == [p["size"] for p in matched] == ["128x96"]
    for point in sgbm + tiny + matched:
        assert 0.0 < point["bad2"] < 100.0 and point["p50_ms"] > 0.0
    assert sgbm[0]["bad2"] != tiny[0]["bad2"]
    assert matched[0]["bad2"] < tiny[0]["bad2"]  # the matching's gain on Aloe
    filled = data["chart"]["OpenCV SGBM, holes filled"]
    assert [p["size"] for p in filled] == ["128x96"] and filled[0]["bad2"] < sgbm[0]["bad2"]
    image = cv2.imread(str(out / "chart.png"))
    assert image is not None and image.shape == (600, 900, 3)
    assert (image < 128).any(axis=2).mean() > 0.005  # axes, lines and labels were drawn
    targets = {t["target"]: t for t in data["targets"]}
    assert any(t.startswith("GPU") and t_["met"] is None for t, t_ in targets.items())
    assert any(t.startswith("our accuracy-vs-time curve") and t.endswith("(against SGBM with its holes filled)")
               for t in targets)


@pytest.mark.dds
@pytest.mark.export
def test_preset_is_benched_with_its_own_settings(report):
    """The CPU preset gets its own row (the node's stages with the file's matching, the node process
    started with --params-file) and a chart point on the 641x555 pair beside the largest size's."""
    data, _ = report
    tiny = next(r for r in data["sizes"][0]["rows"] if r["backend"] == "onnxruntime" and "preset" not in r)
    preset = next(r for r in data["sizes"][0]["rows"] if r.get("preset") == "stereo_depth_cpu.yaml")
    assert preset["config"] == "tiny" and preset["input"] == "256x192" and preset["params_file"] == str(CPU_PRESET)
    # The same network on the same frames; only the matching differs (no census search, no second level).
    assert preset["inference"]["frames_sha1"] == tiny["inference"]["frames_sha1"]
    e2e = preset["end_to_end_below_capacity"]
    assert e2e["sent"] == 4 and e2e["received"]["points2"] >= 3
    (point,) = data["chart"]["tiny (stereo_depth_cpu.yaml) on onnxruntime"]
    assert point["size"] == "128x96" and point["label"] == "256x192 net" and point["max_disparity"] == 64
    # Aloe at half size, the node's path with the preset: 16.2 % (test_evaluate guards the exact figure).
    assert 10.0 < point["bad2"] < 20.0 < data["chart"]["tiny on onnxruntime"][0]["bad2"]
    assert any("(tiny (stereo_depth_cpu.yaml) on onnxruntime, camera 320x240)" in t["target"] for t in data["targets"])


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from ros2_stereo_depth.evaluation.ort_study import export_model
    return export_model("tiny", (64, 48), 32, tmp_path_factory.mktemp("onnx"))


@pytest.mark.export
def test_shipped_ort_session_options_are_the_measured_choice(tiny_onnx):
    from ros2_stereo_depth.inference.onnxruntime_backend import OnnxRuntimeBackend
    options = OnnxRuntimeBackend(tiny_onnx, threads=1).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 1
    assert str(options.graph_optimization_level).endswith("ORT_ENABLE_ALL")


@pytest.mark.export
def test_ort_profile_splits_time_by_op_type_and_module(tiny_onnx):
    from ros2_stereo_depth.evaluation.ort_study import network_inputs, profile
    result = profile(tiny_onnx, network_inputs((64, 48), 1), runs=2)
    shares = dict(result["op_types"])
    assert sum(shares.values()) == pytest.approx(100.0)
    assert sum(dict(result["modules"]).values()) == pytest.approx(100.0)
    # tiny aggregates a 3D cost volume and extracts 2D features: both kinds of convolution appear
    assert any("3D" in op for op in shares) and any("2D" in op for op in shares)
    assert any(m.startswith("/net/aggregation") for m, _ in result["modules"])
    assert 0.0 < result["node_ms_per_run"] <= result["wall_ms_per_run"] * 1.5


def test_dds_runs_use_the_package_environment_and_fast_dds_profile():
    """From a bare environment, the bench's node and sink processes get ros/environment.py's defaults:
    the same Fast DDS profile every executable of the package uses (lost large frames without it)."""
    import os
    import subprocess
    import sys

    from ros2_stereo_depth.ros.environment import FASTDDS_PROFILE, PROFILE_VARIABLE

    code = ("from ros2_stereo_depth.evaluation.dds_latency import ros_environment as e; env = e(); "
            f"print(env['{PROFILE_VARIABLE}'], env['ROS_AUTOMATIC_DISCOVERY_RANGE'], env['RMW_IMPLEMENTATION'])")
    bare = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    out = subprocess.run([sys.executable, "-c", code], env=bare, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(FASTDDS_PROFILE), "LOCALHOST", "rmw_fastrtps_cpp"]


@pytest.mark.parametrize("sec, nanosec", [(1_700_000_000, 123_456_789), (2, 999_999_999)])
def test_collector_reads_the_header_stamp_from_the_serialised_outputs(sec, nanosec):
    """The end-to-end collector subscribes raw: the stamp it keys latencies by, read from the CDR bytes of
    each output type, is the header's."""
    from rclpy.serialization import serialize_message
    from std_msgs.msg import Header

    from ros2_stereo_depth.evaluation.dds_latency import cdr_header_stamp_ns
    from ros2_stereo_depth.geometry import StereoCamera
    from ros2_stereo_depth.ros.conversions import array_to_image, build_disparity_image, build_point_cloud

    header = Header(frame_id="left_camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = sec, nanosec
    disparity = np.full((3, 4), 2.0, np.float32)
    camera = StereoCamera(100.0, 100.0, 1.5, 1.0, 0.1, 4, 3)
    for msg in (array_to_image(disparity, "32FC1", header),
                build_disparity_image(disparity, header, 100.0, 0.1, 0.0, 64.0, 0.0625),
                build_point_cloud(camera, disparity, 0.0, None, header)):
        assert cdr_header_stamp_ns(serialize_message(msg)) == sec * 10**9 + nanosec, type(msg).__name__
    with pytest.raises(ValueError, match="not a CDR"):
        cdr_header_stamp_ns(b"\x00\x01\x00")


def test_rss_target_takes_the_larger_of_the_node_runs():
    """Each end-to-end run starts a node process of its own; the RSS target and the table take the larger
    peak (fast at 1280x720 once peaked at 476.8 MiB below capacity and 484 MiB, over 500 MB, above it)."""
    from ros2_stereo_depth.evaluation.bench_report import markdown, targets

    def run(rss: float) -> dict:
        return {"rate_hz": 1.0, "sent": 4, "dropped": 0, "node_peak_rss_mib": rss,
                "frame_latency_ms": {"p50": 100.0, "p95": 110.0}}

    row = {"config": "fast", "backend": "onnxruntime", "input": "640x480", "max_disparity": 128,
           "inference": {"p50_ms": 50.0}, "sgbm": {"p50_ms": 40.0}, "x_sgbm_time": 1.25, "node_overhead_ms": 10.0,
           "stage_total_ms": 90.0, "stages": {s: {"p50_ms": 1.0} for s in STAGES},
           "end_to_end_below_capacity": run(477.0), "end_to_end_overload": run(484.0)}
    report = {"sizes": [{"camera": "1280x720", "rows": [row]}], "repeats": 3, "threads": 0, "started": "now",
              "machine": {"platform": "test", "versions": {"torch": "t", "onnxruntime": "o", "opencv": "c"},
                          "load_average_start": [0.0], "load_average_end": [0.0]}}
    report["targets"] = targets(report)
    (rss,) = [t for t in report["targets"] if t["target"].startswith("node peak RSS")]
    assert rss["met"] is False and rss["measured"].startswith("484 MiB (508 MB")
    line = next(line for line in markdown(report).splitlines() if line.startswith("| fast | onnxruntime | 640x480"))
    assert line.rstrip(" |").endswith("484")
    row["end_to_end_below_capacity"], row["end_to_end_overload"] = run(470.0), run(460.0)
    (rss,) = [t for t in targets(report) if t["target"].startswith("node peak RSS")]
    assert rss["met"] is True and rss["measured"].startswith("470 MiB (493 MB")
