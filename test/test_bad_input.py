"""Bad input to stereo_depth_node over real DDS: each bad set is dropped with one clear error (on
/rosout) naming the topic and the problem, the node keeps running, and the next good set is processed
with the right output."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ros2_stereo_depth.image_encoding import image_to_array
from ros2_stereo_depth.ros.conversions import array_to_image

from ros_harness import Harness, stereo_pair

torch.set_num_threads(1)
NS = "/test_bad"
PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "qos_reliability": "reliable"}


@pytest.fixture(scope="module")
def harness():
    h = Harness(NS, PARAMS, reliable=True)
    h.wait_connected()
    yield h
    h.close()


@pytest.fixture(scope="module")
def reference(harness):
    """The good pair and its disparity: every good frame after a bad one must reproduce it."""
    sample = stereo_pair()
    key = harness.publish(harness.messages(sample.left, sample.right, harness.next_header()))
    return sample, image_to_array(harness.wait_for(key, names=("disparity",))["disparity"].image)


def run_bad_then_good(harness, reference, bad_msgs, topic: str, problem: str, repeats: int = 1) -> None:
    sample, expected = reference
    rejected = harness.node.stats["rejected"]
    with harness.lock:
        first_log = len(harness.logs)
    bad_keys = []
    for _ in range(repeats):
        msgs = bad_msgs(harness.messages(sample.left, sample.right, harness.next_header()))
        bad_keys.append(harness.publish(msgs))
    good = harness.wait_for(harness.publish(harness.messages(sample.left, sample.right, harness.next_header())))
    np.testing.assert_array_equal(image_to_array(good["disparity"].image), expected)
    # Sets are handled in stamp order, so the bad ones were dealt with before the good one's output.
    assert harness.node.stats["rejected"] == rejected + repeats
    with harness.lock:
        assert not any(k in harness.outputs for k in bad_keys), "a bad frame produced output"
    needle = f"{NS}/{topic}"
    deadline = time.monotonic() + 10.0
    while not harness.error_logs(needle, problem, since=first_log) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # room for (wrongly) repeated errors to arrive
    logs = harness.error_logs(needle, problem, since=first_log)
    assert len(logs) == 1, f"expected one error naming {needle} and {problem!r}, got {logs}"


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


@pytest.mark.parametrize("tx_sign", [0.0, 1.0], ids=["zero", "negative"])
def test_bad_baseline(harness, reference, tx_sign):
    def bad(msgs):
        p = list(msgs[3].p)
        p[3] = tx_sign * abs(p[3])  # P[3] = -fx*baseline: 0 or positive means baseline <= 0
        msgs[3].p = p
        return msgs
    harness.node._last_error.clear()  # both cases share one throttle key; each must log here
    run_bad_then_good(harness, reference, bad, "right/camera_info", "need > 0")


def test_camera_info_size_differs_from_image(harness, reference):
    def bad(msgs):
        msgs[2].width, msgs[2].height = 640, 480
        return msgs
    run_bad_then_good(harness, reference, bad, "left/camera_info", "camera_info is 640x480 but the image is 320x240")
