"""stereo_depth_lifecycle_node over real DDS, driven through its lifecycle services as `ros2 lifecycle`
would: configure loads the backend, activate subscribes and publishes, deactivate stops, cleanup frees.
The node runs with approximate_sync and a 10 ms tolerance, so approximate pairs inside and outside the
tolerance are checked here too; parameters come in as a params file would give them (min_disparity 0 as
an integer)."""
from __future__ import annotations

import time

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from ros2_stereo_depth.image_encoding import image_to_array
from ros2_stereo_depth.ros.lifecycle_node import StereoDepthLifecycleNode
from ros2_stereo_depth.ros.sync import stamp_key

from ros_harness import Harness, stereo_pair

pytestmark = [pytest.mark.dds, pytest.mark.usefixtures("one_torch_thread")]
NS = "/test_lifecycle"
PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "min_disparity": 0, "approximate_sync": True,
          "approximate_sync_tolerance_seconds": 0.01,
          # one topic's QoS overridden (qos_overrides); the others keep qos_reliability (best_effort)
          f"qos_overrides.{NS}/left/image_rect.subscription.reliability": "reliable",
          f"qos_overrides.{NS}/disparity/image_color.publisher.reliability": "best_effort"}


@pytest.fixture(scope="module")
def harness():
    h = Harness(NS, {}, start_node=False)
    h.node = StereoDepthLifecycleNode(context=h.context, namespace=NS,
                                      parameter_overrides=[Parameter(k, value=v) for k, v in PARAMS.items()])
    h.executor.add_node(h.node)
    h.change = h.client.create_client(ChangeState, f"{NS}/stereo_depth_node/change_state")
    h.get = h.client.create_client(GetState, f"{NS}/stereo_depth_node/get_state")
    assert h.change.wait_for_service(timeout_sec=20) and h.get.wait_for_service(timeout_sec=20)
    yield h
    h.close()


def call(client, request, timeout=120.0):
    future = client.call_async(request)
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, "lifecycle service did not answer"
        time.sleep(0.02)
    return future.result()


def transition(h, transition_id: int) -> int:
    assert call(h.change, ChangeState.Request(transition=Transition(id=transition_id))).success
    return call(h.get, GetState.Request()).current_state.id


def publishers(h, name: str) -> int:
    return h.client.count_publishers(f"{NS}/{name}")


def test_transitions(harness):
    h = harness
    assert call(h.get, GetState.Request()).current_state.id == State.PRIMARY_STATE_UNCONFIGURED
    assert h.node.pipeline.processor is None and publishers(h, "disparity") == 0
    assert transition(h, Transition.TRANSITION_CONFIGURE) == State.PRIMARY_STATE_INACTIVE
    assert h.node.pipeline.processor is not None  # the backend is loaded
    assert publishers(h, "disparity") == 0 and h.node.count_subscribers(f"{NS}/left/image_rect") == 0
    assert transition(h, Transition.TRANSITION_ACTIVATE) == State.PRIMARY_STATE_ACTIVE
    h.wait_connected()
    sample = stereo_pair()
    out = h.wait_for(h.publish(h.messages(sample.left, sample.right, h.next_header())))
    assert image_to_array(out["disparity"].image).shape == (240, 320)
    assert transition(h, Transition.TRANSITION_DEACTIVATE) == State.PRIMARY_STATE_INACTIVE
    deadline = time.monotonic() + 10
    while publishers(h, "disparity") or any(p.get_subscription_count() for p in h.pubs):
        assert time.monotonic() < deadline, "deactivate left topics behind"
        time.sleep(0.05)
    processed = h.node.health.counts["processed"]
    h.publish(h.messages(sample.left, sample.right, h.next_header()))
    time.sleep(0.5)
    assert h.node.health.counts["processed"] == processed  # inactive: nothing processed
    assert transition(h, Transition.TRANSITION_CLEANUP) == State.PRIMARY_STATE_UNCONFIGURED
    assert h.node.pipeline.processor is None  # the backend is freed
    assert transition(h, Transition.TRANSITION_CONFIGURE) == State.PRIMARY_STATE_INACTIVE
    assert transition(h, Transition.TRANSITION_ACTIVATE) == State.PRIMARY_STATE_ACTIVE  # and again
    h.wait_connected()
    out = h.wait_for(h.publish(h.messages(sample.left, sample.right, h.next_header())), names=("disparity",))
    assert out["disparity"].min_disparity == 0.0  # the integer 0 from the parameters, as a float


def test_qos_overrides_on_every_topic(harness):
    from rclpy.qos import ReliabilityPolicy

    from ros2_stereo_depth.ros.node import COLOUR_TOPIC, INPUTS, OUTPUT_TYPES

    h = harness
    if call(h.get, GetState.Request()).current_state.id != State.PRIMARY_STATE_ACTIVE:
        pytest.skip("needs the active node of test_transitions")
    for topic in [t for t, _ in INPUTS] + [COLOUR_TOPIC]:
        assert h.node.has_parameter(f"qos_overrides.{NS}/{topic}.subscription.reliability"), topic
    for topic in OUTPUT_TYPES:
        assert h.node.has_parameter(f"qos_overrides.{NS}/{topic}.publisher.depth"), topic

    def reliability(topic, kind):  # as the DDS graph reports the node's endpoint
        get = h.client.get_subscriptions_info_by_topic if kind == "sub" else h.client.get_publishers_info_by_topic
        infos = [i for i in get(f"{NS}/{topic}") if i.node_name == "stereo_depth_node"]
        assert len(infos) == 1, infos
        return infos[0].qos_profile.reliability
    assert reliability("left/image_rect", "sub") == ReliabilityPolicy.RELIABLE  # overridden
    assert reliability("right/image_rect", "sub") == ReliabilityPolicy.BEST_EFFORT  # qos_reliability
    assert reliability("disparity/image_color", "pub") == ReliabilityPolicy.BEST_EFFORT  # overridden
    assert reliability("disparity", "pub") == ReliabilityPolicy.RELIABLE


def _shifted(h, msgs, right_offset_ns: int):
    """Right image and camera_info restamped `right_offset_ns` after the left ones."""
    sec, nanosec = divmod(stamp_key(msgs[0]) + right_offset_ns, 1_000_000_000)
    msgs[1].header = msgs[3].header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=msgs[1].header.frame_id)
    return msgs


def test_approximate_pairs_inside_and_outside_tolerance(harness):
    h = harness
    if call(h.get, GetState.Request()).current_state.id != State.PRIMARY_STATE_ACTIVE:
        pytest.skip("needs the active node of test_transitions")
    sample = stereo_pair()
    msgs = h.messages(sample.left, sample.right, h.next_header())
    inside = h.publish(_shifted(h, msgs, 4_000_000))  # 4 ms: one set
    out = h.wait_for(inside, names=("disparity",))
    assert out["disparity"].header.stamp == msgs[0].header.stamp  # the left image's stamp
    processed = h.node.health.counts["processed"]
    h.stamp_ns += 100_000_000
    msgs = h.messages(sample.left, sample.right, h.next_header())
    outside = h.publish(_shifted(h, msgs, 30_000_000))  # 30 ms: no set
    time.sleep(1.0)
    with h.lock:
        assert outside not in h.outputs
    assert h.node.health.counts["processed"] == processed
