"""stereo_depth_node end to end over real DDS: a synthetic pair in, disparity / points2 / depth out.

The node runs in-process (tiny config, torch on CPU, 256x192 network input) and gets 320x240 images,
so the resize and disparity rescaling paths run too. Random weights give meaningless disparity, so
accuracy is only asserted with shipped tiny weights; geometry and message layout are always asserted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from sensor_msgs.msg import PointField

from ros2_stereo_depth.image_encoding import image_to_array, image_to_rgb
from ros2_stereo_depth.ros.conversions import unpack_rgb
from ros2_stereo_depth.ros.sync import ExactTimeSync
from ros2_stereo_depth.artifacts.weights import shipped_weights

from ros_harness import BASELINE, FRAME_ID, Harness, stereo_pair

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
NODE_PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "min_confidence": 0.0, "min_disparity": 0.0}


@pytest.fixture(scope="module")
def harness():
    # Best-effort publishers (what camera drivers use) against the node's default best-effort QoS.
    h = Harness("/test_node", NODE_PARAMS, reliable=False)
    h.wait_connected()
    yield h
    h.close()


@pytest.fixture(scope="module")
def first_frame(harness):
    sample = stereo_pair()
    msgs = harness.messages(sample.left, sample.right, harness.next_header())
    key = harness.publish(msgs)
    return sample, msgs, harness.wait_for(key)


def test_disparity_message(harness, first_frame):
    sample, msgs, out = first_frame
    left_img, _, left_info, right_info = msgs
    disp = out["disparity"]
    assert disp.header.stamp == left_img.header.stamp and disp.header.frame_id == FRAME_ID
    assert disp.image.header.stamp == left_img.header.stamp and disp.image.header.frame_id == FRAME_ID
    assert (disp.image.width, disp.image.height, disp.image.encoding) == (320, 240, "32FC1")
    assert disp.f == pytest.approx(right_info.p[0]) and disp.t == pytest.approx(BASELINE)
    # The network searches 64 px at 256 wide: 80 px at the camera's 320.
    assert disp.max_disparity == pytest.approx(64 * 320 / 256)
    assert disp.min_disparity == 0.0 and disp.delta_d > 0
    d = image_to_array(disp.image)
    valid = d > disp.min_disparity
    assert valid.mean() > 0.5, "too few valid pixels to check anything"
    assert np.all(d[~valid] < disp.min_disparity), "invalid pixels must read below min_disparity"


def test_disparity_is_the_network_output_at_camera_resolution(harness, first_frame):
    """The ROS path (conversion, resize to 256x192, resize back, x320/256 rescale) against the same
    backend called directly: catches channel-order, resize and scale mistakes even with random weights."""
    sample, _, out = first_frame
    backend = harness.node.backend
    result = backend.infer(cv2.resize(sample.left, (256, 192), interpolation=cv2.INTER_AREA),
                           cv2.resize(sample.right, (256, 192), interpolation=cv2.INTER_AREA))
    expected = cv2.resize(result.disparity_px, (320, 240), interpolation=cv2.INTER_LINEAR) * (320 / 256)
    got = image_to_array(out["disparity"].image)
    valid = expected > 0
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-4, atol=1e-3)


def test_point_cloud_geometry(harness, first_frame):
    _, msgs, out = first_frame
    left_img, _, left_info, right_info = msgs
    cloud, disp_msg = out["points2"], out["disparity"]
    assert cloud.header.stamp == left_img.header.stamp and cloud.header.frame_id == FRAME_ID
    assert (cloud.width, cloud.height, cloud.point_step, cloud.row_step) == (320, 240, 16, 16 * 320)
    assert not cloud.is_bigendian and not cloud.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    # Decode independently of conversions.point_cloud_to_array: raw little-endian float32 quadruples.
    raw = np.frombuffer(bytes(cloud.data), "<f4").reshape(240, 320, 4)
    d = image_to_array(disp_msg.image).astype(np.float64)
    valid = d > disp_msg.min_disparity
    f, t = disp_msg.f, disp_msg.t
    fx, cx, fy, cy = left_info.p[0], left_info.p[2], left_info.p[5], left_info.p[6]
    z = f * t / d[valid]
    v, u = np.nonzero(valid)
    np.testing.assert_allclose(raw[..., 2][valid], z, rtol=1e-5)
    np.testing.assert_allclose(raw[..., 0][valid], (u - cx) * z / fx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(raw[..., 1][valid], (v - cy) * z / fy, rtol=1e-5, atol=1e-6)
    assert np.isnan(raw[..., :3][~valid]).all()
    np.testing.assert_array_equal(unpack_rgb(raw[..., 3]), image_to_rgb(left_img))
    depth = out["depth"]
    assert (depth.encoding, depth.width, depth.height, depth.header.frame_id) == ("32FC1", 320, 240, FRAME_ID)
    np.testing.assert_array_equal(image_to_array(depth), raw[..., 2])


def test_bgr8_with_padded_rows_gives_the_same_output(harness, first_frame):
    sample, _, out = first_frame
    msgs = harness.messages(sample.left, sample.right, harness.next_header(), encoding="bgr8", step=320 * 3 + 17)
    again = harness.wait_for(harness.publish(msgs), names=("disparity",))["disparity"]
    np.testing.assert_array_equal(image_to_array(again.image), image_to_array(out["disparity"].image))


def test_accuracy_with_shipped_weights(harness, first_frame):
    if shipped_weights("tiny") is None:
        pytest.skip("no shipped weights for the tiny config yet (random weights): accuracy not checked")
    sample, _, out = first_frame
    d = image_to_array(out["disparity"].image)
    keep = ~sample.occluded & (d > 0)
    error = np.abs(d[keep] - sample.disparity_px[keep])
    median, bad2 = float(np.median(error)), float((error > 2.0).mean() * 100)
    # This frame (smooth low-contrast noise textures since the generator stopped reading opencv-doc
    # images behind the caller's back) is hard for the shipped tiny weights, trained on the old
    # scenes: median 3.48 px, bad-2 65.8 % (SGBM: median 0.25 px, bad-2 4.5 % where it answers;
    # random weights: median 33 px, bad-2 100 %). Re-measure and tighten with retrained weights;
    # the bounds leave room for other thread counts and CPU kernels, and still fail an untrained network.
    assert median < 4.5 and bad2 < 75.0, f"median error {median:.2f} px, bad-2 {bad2:.1f} % on non-occluded pixels"


def test_exact_time_sync_pairs_and_drops_stale():
    class Msg:
        def __init__(self, ns):
            self.header = type("H", (), {"stamp": type("S", (), {"sec": ns // 10**9, "nanosec": ns % 10**9})})()
            self.ns = ns
    sets = []
    sync = ExactTimeSync(["a", "b", "c"], queue_size=2, callback=lambda s: sets.append([m.ns for m in s]))
    sync.add(0, Msg(1)); sync.add(1, Msg(1))  # noqa: E702 - incomplete, then superseded by 2
    sync.add(0, Msg(2)); sync.add(2, Msg(2)); sync.add(1, Msg(2))  # noqa: E702
    assert sets == [[2, 2, 2]] and sync.dropped == 1 and not sync.pending
    for ns in (3, 4, 5):  # three incomplete sets, room for two: the oldest goes
        sync.add(0, Msg(ns))
    assert list(sync.pending) == [4, 5] and sync.dropped == 2
    sync.add(1, Msg(5)); sync.add(2, Msg(5))  # noqa: E702
    assert sets[-1] == [5, 5, 5] and sync.dropped == 3 and not sync.pending


def test_main_runs_with_params_file(tmp_path):
    """`python -m ros2_stereo_depth.ros.node --ros-args --params-file ...` (the console script calls the
    same main): ONNX Runtime with the model exported at start-up, one frame through, clean SIGINT exit."""
    params = tmp_path / "params.yaml"
    text = (ROOT / "config" / "stereo_depth.yaml").read_text()
    text = text.replace("backend: auto", "backend: onnxruntime").replace("config: fast", "config: tiny")
    params.write_text(text.replace("threads: 0", "threads: 1").replace("qos_reliability: best_effort",
                                                                       "qos_reliability: reliable"))
    proc = subprocess.Popen([sys.executable, "-m", "ros2_stereo_depth.ros.node", "--ros-args",
                             "--params-file", str(params), "-r", "__ns:=/test_main"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    client = Harness("/test_main", {}, reliable=True, start_node=False)
    try:
        client.wait_connected(timeout=90.0)
        sample = stereo_pair(256, 192)
        out = client.wait_for(client.publish(client.messages(sample.left, sample.right, client.next_header())),
                              timeout=60.0)
        assert (out["disparity"].image.width, out["disparity"].image.height) == (256, 192)
        assert np.isfinite(image_to_array(out["disparity"].image)).all()
    finally:
        client.close()
        proc.send_signal(signal.SIGINT)
        try:
            log, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
    assert proc.returncode == 0, log
    assert "backend onnxruntime on cpu, input 256x192" in log, log


def test_launch_file_and_params_file():
    """launch_ros is not installable here: check the launch file's structure statically, and that every
    parameter in the shipped params file is one the node declares, with the declared type."""
    import ast

    import yaml

    from ros2_stereo_depth.ros.node import PARAMETERS

    source = (ROOT / "launch" / "stereo_depth.launch.py").read_text()
    tree = ast.parse(source)
    calls = {node.func.id: node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Name)}
    keywords = {k.arg: k.value for k in calls["Node"].keywords}
    assert ast.literal_eval(keywords["package"]) == "ros2_stereo_depth"
    assert ast.literal_eval(keywords["executable"]) == "stereo_depth_node"  # a console_scripts entry in setup.py
    assert {"namespace", "parameters", "remappings"} <= set(keywords)
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    declared = {ast.literal_eval(c.args[0]) for c in ast.walk(tree) if isinstance(c, ast.Call)
                and getattr(c.func, "id", "") == "DeclareLaunchArgument" and c.args
                and isinstance(c.args[0], ast.Constant)}
    assert {"namespace", "params_file"} <= declared
    params = yaml.safe_load((ROOT / "config" / "stereo_depth.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert type(value) is type(PARAMETERS[name].default), f"{name}: {value!r} has the wrong type"
        assert value == PARAMETERS[name].default, f"{name}: params file and node defaults differ"
