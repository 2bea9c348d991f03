"""Bad input to stereo_depth_node over real DDS: each bad set is dropped with one clear error (on
/rosout) naming the topic and the problem, counted in /diagnostics, the node keeps running, and the
next good set is processed with the right output. Frame-id problems are warnings: the set is processed."""
from __future__ import annotations

import time

import numpy as np
import pytest
from std_msgs.msg import Header

from ros2_stereo_depth.image_encoding import image_to_array
from ros2_stereo_depth.ros.conversions import array_to_image

from ros2_stereo_depth.ros.health import Throttle

from ros_harness import running, stereo_pair

pytestmark = [pytest.mark.dds, pytest.mark.usefixtures("one_torch_thread")]
NS = "/test_bad"
# use_system_default_qos (stereo_image_proc's name): the RMW's default QoS on the subscriptions, which
# Fast DDS makes best effort for readers, instead of qos_reliability (reliable here, so the two differ).
PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "use_system_default_qos": True,
          "qos_reliability": "reliable"}


@pytest.fixture(scope="module")
def harness():
    yield from running(NS, PARAMS, reliable=True)


@pytest.fixture(scope="module")
def reference(harness):
    """The good pair and its disparity: every good frame after a bad one must reproduce it."""
    sample = stereo_pair()
    key = harness.publish(harness.messages(sample.left, sample.right, harness.next_header()))
    return sample, image_to_array(harness.wait_for(key, names=("disparity",))["disparity"].image)


def refused(harness) -> int:
    with harness.node.health.lock:
        return sum(harness.node.health.refused.values())


def run_bad_then_good(harness, reference, bad_msgs, topic: str, problem: str, repeats: int = 1,
                      counter: str | None = None) -> None:
    """`counter`: the diagnostics key ("refused <topic>: <kind>") that must grow by `repeats`."""
    sample, expected = reference
    rejected = refused(harness)
    diagnostics_before = harness.diagnostic_values(len(harness.diagnostics) - 1)[1] if counter else {}
    with harness.lock:
        first_log = len(harness.logs)
    bad_keys = []
    for _ in range(repeats):
        msgs = bad_msgs(harness.messages(sample.left, sample.right, harness.next_header()))
        bad_keys.append(harness.publish(msgs))
    good = harness.wait_for(harness.publish(harness.messages(sample.left, sample.right, harness.next_header())))
    np.testing.assert_array_equal(image_to_array(good["disparity"].image), expected)
    # Sets are handled in stamp order, so the bad ones were dealt with before the good one's output.
    assert refused(harness) == rejected + repeats
    with harness.lock:
        assert not any(k in harness.outputs for k in bad_keys), "a bad frame produced output"
    needle = f"{NS}/{topic}"
    deadline = time.monotonic() + 10.0
    while not harness.error_logs(needle, problem, since=first_log) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # room for (wrongly) repeated errors to arrive
    logs = harness.error_logs(needle, problem, since=first_log)
    assert len(logs) == 1, f"expected one error naming {needle} and {problem!r}, got {logs}"
    if counter:
        key = f"refused {NS}/{counter}"
        _, after = harness.diagnostic_values(len(harness.diagnostics) + 1)  # a status from after the sets
        assert int(after[key]) == int(diagnostics_before.get(key, 0)) + repeats, after


def _resize_right(msgs):
    msgs[1] = array_to_image(stereo_pair(160, 120).right, "rgb8", msgs[1].header)
    msgs[3].width, msgs[3].height = 160, 120  # its camera_info agrees: only left vs right differ
    return msgs


def test_mismatched_left_right_sizes_logged_once(harness, reference):
    # Sent three times: the error is throttled to one line.
    run_bad_then_good(harness, reference, _resize_right, "right/image_rect", "same size", repeats=3)


def test_unsupported_encoding(harness, reference):
    def bad(msgs):
        msgs[0].encoding = "yuv422"
        return msgs
    run_bad_then_good(harness, reference, bad, "left/image_rect", "unsupported encoding 'yuv422'")


def test_data_shorter_than_step_times_height(harness, reference):
    def bad(msgs):
        msgs[0].data = bytes(msgs[0].data)[:-1]
        return msgs
    run_bad_then_good(harness, reference, bad, "left/image_rect", "less than step*height")


def test_step_smaller_than_row(harness, reference):
    def bad(msgs):
        msgs[1].step = msgs[1].width * 3 - 3
        return msgs
    run_bad_then_good(harness, reference, bad, "right/image_rect", "less than width*bytes_per_pixel")


def test_zero_focal_length(harness, reference):
    def bad(msgs):
        p = list(msgs[3].p)
        p[0] = 0.0
        msgs[3].p = p
        return msgs
    run_bad_then_good(harness, reference, bad, "right/camera_info", "focal length fx=0.0")


def test_bad_baselines_one_throttled_error_and_both_counted(harness, reference):
    """Zero and negative baselines are one problem on one topic: one error line in the throttle period,
    both sets refused and counted."""
    signs = iter([0.0, 1.0])  # P[3] = -fx*baseline: 0 or positive means baseline <= 0

    def bad(msgs):
        p = list(msgs[3].p)
        p[3] = next(signs) * abs(p[3])
        msgs[3].p = p
        return msgs
    run_bad_then_good(harness, reference, bad, "right/camera_info", "baseline", repeats=2,
                      counter="right/camera_info: baseline")


def test_non_finite_calibration_refused_and_counted(harness, reference):
    """right P[3] = -inf, left P[0] = inf, left cx NaN, left cy NaN: all refused, all counted, one error
    line per topic (the left ones share topic and problem, so the throttle shows the first)."""
    sample, expected = reference
    cases = [(3, 3, -np.inf), (2, 0, np.inf), (2, 2, np.nan), (2, 6, np.nan)]
    with harness.lock:
        first_log = len(harness.logs)
    _, before = harness.diagnostic_values(len(harness.diagnostics) - 1)
    keys = []
    for info, index, value in cases:
        msgs = harness.messages(sample.left, sample.right, harness.next_header())
        p = list(msgs[info].p)
        p[index] = value
        msgs[info].p = p
        keys.append(harness.publish(msgs))
    good = harness.wait_for(harness.publish(harness.messages(sample.left, sample.right, harness.next_header())))
    np.testing.assert_array_equal(image_to_array(good["disparity"].image), expected)
    with harness.lock:
        assert not any(k in harness.outputs for k in keys), "a set with non-finite calibration produced output"
    _, after = harness.diagnostic_values(len(harness.diagnostics) + 1)
    for side, n in (("right", 1), ("left", 3)):
        key = f"refused {NS}/{side}/camera_info: not_finite"
        assert int(after[key]) - int(before.get(key, 0)) == n, after
    time.sleep(0.3)
    right = harness.error_logs(f"{NS}/right/camera_info", "non-finite", "P[3]=-inf", since=first_log)
    left = harness.error_logs(f"{NS}/left/camera_info", "non-finite", since=first_log)
    assert len(right) == 1 and len(left) == 1 and "P[0]=inf" in left[0], (right, left)


def test_frame_id_problems_warn_and_still_process(harness, reference):
    sample, expected = reference
    with harness.lock:
        first_log = len(harness.logs)
    msgs = harness.messages(sample.left, sample.right, harness.next_header())
    msgs[3].header = Header(stamp=msgs[3].header.stamp, frame_id="somewhere_else")  # right info vs right image
    out = harness.wait_for(harness.publish(msgs), names=("disparity",))
    np.testing.assert_array_equal(image_to_array(out["disparity"].image), expected)
    msgs = harness.messages(sample.left, sample.right, harness.next_header())
    msgs[0].header.frame_id = ""  # the left image and its camera_info share this header
    harness.wait_for(harness.publish(msgs), names=("disparity",))
    deadline = time.monotonic() + 5
    def warnings():
        with harness.lock:
            return [m.msg for m in harness.logs[first_log:] if m.level == 30 and "stereo_depth_node" in m.name]
    while len(warnings()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    text = "\n".join(warnings())
    assert f"{NS}/right/camera_info: frame_id 'somewhere_else' differs from {NS}/right/image_rect's" in text, text
    assert f"{NS}/left/image_rect: empty header.frame_id" in text, text
    with harness.node.health.lock:
        assert harness.node.health.warnings[f"{NS}/left/image_rect: empty_frame_id"] >= 1


def test_system_default_qos_subscriptions(harness):
    """The node's subscriptions report what a system-default subscription reports (the RMW decides)."""
    from rclpy.qos import ReliabilityPolicy, qos_profile_system_default
    from sensor_msgs.msg import Image

    probe = harness.client.create_subscription(Image, "qos_probe", lambda _: None, qos_profile_system_default)
    try:
        def reported(topic, node_name):
            infos = [i for i in harness.client.get_subscriptions_info_by_topic(f"{NS}/{topic}")
                     if i.node_name == node_name]
            return [(i.qos_profile.reliability, i.qos_profile.durability) for i in infos]
        expected = reported("qos_probe", "stereo_test_client")
        assert len(expected) == 1 and expected[0][0] != ReliabilityPolicy.RELIABLE  # else this test shows nothing
        for topic in ("left/image_rect", "right/camera_info"):
            assert reported(topic, "stereo_depth_node") == expected, topic
    finally:
        harness.client.destroy_subscription(probe)


def test_throttle_is_per_key_and_period():
    now = [0.0]
    throttle = Throttle(5.0, clock=lambda: now[0])
    assert throttle(("a", "x")) and not throttle(("a", "x"))
    assert throttle(("a", "y")) and throttle(("b", "x"))  # another problem or topic is not hidden
    now[0] = 4.9
    assert not throttle(("a", "x"))
    now[0] = 5.0
    assert throttle(("a", "x"))


def test_camera_info_size_differs_from_image(harness, reference):
    def bad(msgs):
        msgs[2].width, msgs[2].height = 640, 480
        return msgs
    run_bad_then_good(harness, reference, bad, "left/camera_info", "camera_info is 640x480 but the image is 320x240")
