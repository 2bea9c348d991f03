"""stereo_depth_node end to end over real DDS: a synthetic pair in, disparity / points2 / depth /
confidence / disparity/image_color out; cloud layouts, lazy processing, the colour topic, diagnostics.

The node runs in-process (tiny config, torch on CPU, 256x192 network input) and gets 320x240 images,
so the resize and disparity rescaling paths run too. Random weights give meaningless disparity, so
accuracy is only asserted with shipped tiny weights; geometry and message layout are always asserted.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import PointField

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.parameter import Parameter

from ros2_stereo_depth.fileio import colourise_disparity
from ros2_stereo_depth.image_encoding import image_to_array, image_to_rgb
from ros2_stereo_depth.inference.base import infer_at_image_size
from ros2_stereo_depth.inference.local_matching import NO_MATCHING, LocalMatching
from ros2_stereo_depth.ros.conversions import array_to_image, point_cloud_to_array, unpack_rgb
from ros2_stereo_depth.ros.approximate_sync import ApproximateTimeSync
from ros2_stereo_depth.ros.sync import ExactTimeSync
from ros2_stereo_depth.artifacts.weights import shipped_weights

from ros_harness import BASELINE, FRAME_ID, running, stereo_pair

pytestmark = [pytest.mark.dds, pytest.mark.usefixtures("one_torch_thread")]
NODE_PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "min_confidence": 0.0, "min_disparity": 0.0}


@pytest.fixture(scope="module")
def harness():
    # Best-effort publishers (what camera drivers use) against the node's default best-effort QoS.
    yield from running("/test_node", NODE_PARAMS, reliable=False)


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
    rows, cols = np.nonzero(valid)  # valid_window: the box around the pixels the network gave a disparity
    w = disp.valid_window
    assert (w.x_offset, w.y_offset, w.width, w.height) == (
        cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)


def network_then_matching(backend, sample, matching):
    """The node's disparity computed here step by step: resize to 256x192, network, its disparity resized
    back and x320/256, local matching at the camera's 320x240 (at most 1.25x the network's width: level 1
    runs there, and there is no level 2), then the edge sides; with the matching off, the network's
    disparity resized back."""
    small = [cv2.resize(image, (256, 192), interpolation=cv2.INTER_AREA) for image in (sample.left, sample.right)]
    network = cv2.resize(backend.infer(*small).disparity_px, (320, 240), interpolation=cv2.INTER_LINEAR) * np.float32(320 / 256)
    if matching == NO_MATCHING:
        assert matching.first_level_size((320, 240), (256, 192)) == (256, 192)
        return network
    assert matching.first_level_size((320, 240), (256, 192)) == (320, 240)
    return matching.at_edges(sample.left, sample.right, matching.at_first_level(sample.left, sample.right, network))


def test_disparity_is_the_network_output_at_camera_resolution(harness, first_frame):
    """The ROS path (conversion, resize to 256x192, network, resize back, x320/256 rescale, local matching,
    SGBM fusion and edge sides) against the same steps called directly: catches channel-order, resize and scale
    mistakes even with random weights; then with the matching turned off at run time, the network alone."""
    sample, _, out = first_frame
    backend = harness.node.pipeline.processor.backend
    expected = network_then_matching(backend, sample, LocalMatching())
    got = image_to_array(out["disparity"].image)
    valid = expected > 0
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-4, atol=1e-3)
    network_alone = network_then_matching(backend, sample, NO_MATCHING)
    assert np.abs(network_alone - expected)[valid].mean() > 0.05  # the matching changed something
    _set(harness, match_radius_px=0, match_camera_radius_px=0, match_sgbm=False, match_edges=False)
    try:
        msgs = harness.messages(sample.left, sample.right, harness.next_header())
        got = image_to_array(harness.wait_for(harness.publish(msgs), names=("disparity",))["disparity"].image)
    finally:
        _set(harness, match_radius_px=LocalMatching().radius_px, match_camera_radius_px=LocalMatching().camera_radius_px,
             match_sgbm=LocalMatching().sgbm, match_edges=LocalMatching().edges)
    valid = network_alone > 0
    np.testing.assert_allclose(got[valid], network_alone[valid], rtol=1e-4, atol=1e-3)


def test_point_cloud_geometry(harness, first_frame):
    """Default layout (stereo_image_proc's, avoid_point_cloud_padding false): x y z at 0/4/8, rgb at 16,
    point_step 32; decoded here with raw byte offsets, independently of the node's code."""
    _, msgs, out = first_frame
    left_img, _, left_info, right_info = msgs
    cloud, disp_msg = out["points2"], out["disparity"]
    assert cloud.header.stamp == left_img.header.stamp and cloud.header.frame_id == FRAME_ID
    assert (cloud.width, cloud.height, cloud.point_step, cloud.row_step) == (320, 240, 32, 32 * 320)
    assert not cloud.is_bigendian and not cloud.is_dense
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 16, PointField.FLOAT32, 1)]
    raw = np.frombuffer(bytes(cloud.data), "<f4").reshape(240, 320, 8)
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
    np.testing.assert_array_equal(unpack_rgb(raw[..., 4]), image_to_rgb(left_img))
    depth = out["depth"]
    assert (depth.encoding, depth.width, depth.height, depth.header.frame_id) == ("32FC1", 320, 240, FRAME_ID)
    np.testing.assert_array_equal(image_to_array(depth), raw[..., 2])


def test_first_matching_level_width_is_a_run_time_parameter(harness, first_frame):
    """match_width_px:=160 on the 320x240 camera: level 1 at 160x120 (below the network's 256 px), then the
    edge-aware upsampling and level 2 at 320x240, as infer_at_image_size computes it with that width."""
    sample, _, out = first_frame
    backend = harness.node.pipeline.processor.backend
    _set(harness, match_width_px=160)
    try:
        msgs = harness.messages(sample.left, sample.right, harness.next_header())
        got = image_to_array(harness.wait_for(harness.publish(msgs), names=("disparity",))["disparity"].image)
    finally:
        _set(harness, match_width_px=0)
    expected = infer_at_image_size(backend, sample.left, sample.right, LocalMatching(width_px=160)).disparity_px
    default = image_to_array(out["disparity"].image)
    valid = (expected > 0) & (default > 0)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-4, atol=1e-3)
    assert np.abs(got - default)[valid].mean() > 0.05  # the narrower level changed the answer


def _set(harness, **values):
    result = harness.node.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    assert all(r.successful for r in result), result


def test_cloud_layouts_decode_to_the_same_points(harness, first_frame):
    """avoid_point_cloud_padding true (16 bytes) and use_color false (no rgb field) give the same points
    as the padded default when each is read at its declared offsets."""
    sample, _, out = first_frame
    reference = point_cloud_to_array(out["points2"])
    try:
        for padding, colour, step, names in ((True, True, 16, ["x", "y", "z", "rgb"]), (True, False, 12, ["x", "y", "z"]),
                                             (False, False, 16, ["x", "y", "z"])):
            _set(harness, avoid_point_cloud_padding=padding, use_color=colour)
            msgs = harness.messages(sample.left, sample.right, harness.next_header())
            cloud = harness.wait_for(harness.publish(msgs), names=("points2",))["points2"]
            assert (cloud.point_step, [f.name for f in cloud.fields]) == (step, names)
            assert [f.offset for f in cloud.fields] == [0, 4, 8, 12][:len(names)]
            points = point_cloud_to_array(cloud)
            for name in names:
                np.testing.assert_array_equal(points[name], reference[name])
    finally:
        _set(harness, avoid_point_cloud_padding=False, use_color=True)


def test_integer_where_a_float_is_meant_and_bad_values_refused(harness):
    _set(harness, min_disparity=0)  # an integer, as stereo_image_proc users write it
    assert harness.node.get_parameter("min_disparity").value == 0
    result = harness.node.set_parameters([Parameter("min_confidence", value=1.5)])[0]
    assert not result.successful and "min_confidence = 1.5" in result.reason and "[0, 1]" in result.reason


def test_confidence_and_colour_map(harness, first_frame):
    sample = first_frame[0]
    for name in ("confidence", "disparity/image_color"):
        harness.output_subs[name] = harness.subscribe(name)
    try:
        harness.wait_connected()
        msgs = harness.messages(sample.left, sample.right, harness.next_header())
        out = harness.wait_for(harness.publish(msgs), names=("disparity", "confidence", "disparity/image_color"))
        backend = harness.node.pipeline.processor.backend
        expected = infer_at_image_size(backend, sample.left, sample.right).confidence
        confidence = image_to_array(out["confidence"])
        assert out["confidence"].encoding == "32FC1" and confidence.shape == (240, 320)
        assert confidence.min() >= 0.0 and confidence.max() <= 1.0
        np.testing.assert_allclose(confidence, np.clip(expected, 0, 1), atol=1e-5)
        colour = out["disparity/image_color"]
        disp = out["disparity"]
        d = image_to_array(disp.image)
        rgb = colourise_disparity(np.where(d > disp.min_disparity, d, 0.0), disp.max_disparity)
        assert (colour.encoding, colour.width, colour.height) == ("bgr8", 320, 240)
        np.testing.assert_array_equal(image_to_array(colour), rgb[:, :, ::-1])
    finally:
        for name in ("confidence", "disparity/image_color"):
            harness.unsubscribe(name)


def test_cloud_colour_from_image_rect_color(harness, first_frame):
    sample = first_frame[0]
    colour_pub = harness.client.create_publisher(type(first_frame[1][0]), "left/image_rect_color", harness.out_qos)
    try:
        deadline = time.monotonic() + 10
        while colour_pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        header = harness.next_header()
        tint = np.full_like(sample.left, (10, 200, 30))  # unlike the left image
        colour_pub.publish(array_to_image(tint, "rgb8", header))
        time.sleep(0.2)  # the colour image first: it is looked up when the cloud is built
        cloud = harness.wait_for(harness.publish(harness.messages(sample.left, sample.right, header)),
                                 names=("points2",))["points2"]
        np.testing.assert_array_equal(unpack_rgb(point_cloud_to_array(cloud)["rgb"]), tint)
    finally:
        harness.client.destroy_publisher(colour_pub)


def test_lazy_no_inference_without_subscribers(harness, first_frame):
    sample = first_frame[0]
    names = list(harness.output_subs)
    for name in names:
        harness.unsubscribe(name)
    try:
        deadline = time.monotonic() + 10
        while any(p.get_subscription_count() for p in harness.node.pipeline.pubs.values()):
            assert time.monotonic() < deadline, "the node still sees subscribers"
            time.sleep(0.05)
        counts = dict(harness.node.health.counts)
        for _ in range(3):
            harness.publish(harness.messages(sample.left, sample.right, harness.next_header()))
        deadline = time.monotonic() + 10
        while harness.node.health.counts["idle"] < counts.get("idle", 0) + 3:
            assert time.monotonic() < deadline, dict(harness.node.health.counts)
            time.sleep(0.05)
        assert harness.node.health.counts["processed"] == counts["processed"]
    finally:
        for name in names:
            harness.output_subs[name] = harness.subscribe(name)
        harness.wait_connected()


def test_diagnostics_counts_and_warns_on_one_side(harness, first_frame):
    sample = first_frame[0]
    status, values = harness.diagnostic_values(len(harness.diagnostics))
    assert status.hardware_id == "cpu"
    assert values["backend"] == "torch" and values["device"] == "cpu" and values["network input"] == "256x192"
    counts = harness.node.health.counts
    assert int(values["processed"]) <= counts["processed"] and int(values["processed"]) >= 1
    assert float(values["latency p95 (ms)"]) >= float(values["latency p50 (ms)"]) > 0
    # Left only for two diagnostics periods: WARN naming the silent right topics.
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        msgs = harness.messages(sample.left, sample.right, harness.next_header())
        harness.pubs[0].publish(msgs[0])
        harness.pubs[2].publish(msgs[2])
        time.sleep(0.1)
    status, values = harness.diagnostic_values(len(harness.diagnostics) - 1)
    assert status.level == DiagnosticStatus.WARN, status
    assert "right/image_rect" in status.message and "right/camera_info" in status.message
    assert float(values["rate left/image_rect (Hz)"]) > 3 and float(values["rate right/image_rect (Hz)"]) == 0
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
    # This frame (smooth low-contrast noise textures) is hard for tiny: the shipped weights give median
    # 0.21 px, bad-2 14.8 % through the node's default path (census matching alone 0.27 px / 30.0 %; the
    # network alone 2.45 px / 64.1 %; random weights 36 px / 100 % alone, 0.26 px / 25.8 % through the
    # matching and the SGBM fusion, whose trusted matches do not depend on the network).
    # The bounds leave room for other thread counts and CPU kernels, and still fail an untrained network.
    assert median < 1.0 and bad2 < 20.0, f"median error {median:.2f} px, bad-2 {bad2:.1f} % on non-occluded pixels"


class Msg:
    """Just what the synchronisers read: header.stamp; `ns` to tell the messages apart."""

    def __init__(self, ns):
        self.header = type("H", (), {"stamp": type("S", (), {"sec": ns // 10**9, "nanosec": ns % 10**9})})()
        self.ns = ns


def test_exact_time_sync_pairs_and_drops_stale():
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


def test_approximate_sync_pairs_within_tolerance():
    sets = []
    sync = ApproximateTimeSync(["l", "r"], queue_size=5, callback=lambda s: sets.append([m.ns for m in s]),
                               tolerance_s=0.010)
    ms = 1_000_000
    sync.add(0, Msg(1000 * ms)); sync.add(1, Msg(1004 * ms))  # noqa: E702 - 4 ms apart: a set
    assert sets == [[1000 * ms, 1004 * ms]]
    sync.add(0, Msg(1100 * ms)); sync.add(1, Msg(1130 * ms))  # noqa: E702 - 30 ms apart: no set
    assert len(sets) == 1 and sync.dropped == 1
    sync.add(0, Msg(1133 * ms))  # the newer left image is within 3 ms of the waiting right one
    assert sets[-1] == [1133 * ms, 1130 * ms]
    unbounded = ApproximateTimeSync(["l", "r"], 5, lambda s: sets.append([m.ns for m in s]))
    unbounded.add(0, Msg(2000 * ms)); unbounded.add(0, Msg(2050 * ms)); unbounded.add(1, Msg(2045 * ms))  # noqa: E702
    assert sets[-1] == [2050 * ms, 2045 * ms] and unbounded.dropped == 1  # the nearest left image
