"""stereo_depth_node with `adapt: true` over real DDS: every set still gets its disparity while the network
adapts in the background, /diagnostics reports the steps and the label-free loss, and the adapted weights
saved at shutdown load back and differ from the shipped ones. A non-torch backend is refused at start-up."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rclpy
import torch
from rclpy.parameter import Parameter

from ros2_stereo_depth.artifacts.weights import load_model
from ros2_stereo_depth.ros.params import ParameterError

from ros_harness import Harness, stereo_pair

pytestmark = [pytest.mark.dds, pytest.mark.usefixtures("one_torch_thread")]
NODE_PARAMS = {"backend": "torch", "config": "tiny", "threads": 1, "adapt": True, "adapt_lr": 1e-4,
               "adapt_max_steps_per_s": 20.0, "adapt_save_every": 1000, "adapt_frames_per_step": 3,
               "adapt_photometric_scales": 3, "adapt_check_every": 2}
SETS = 6


def test_node_keeps_publishing_while_it_adapts(tmp_path) -> None:
    saved = tmp_path / "adapted" / "tiny_online.safetensors"
    harness = Harness("/test_adapt", {**NODE_PARAMS, "adapted_weights_path": str(saved)})
    try:
        harness.wait_connected()
        backend = harness.node.pipeline.processor.backend
        shipped = backend.net
        for index in range(SETS):  # one set at a time: each must come back although the node adapts
            sample = stereo_pair(index=index)
            key = harness.publish(harness.messages(sample.left, sample.right, harness.next_header()))
            disparity = harness.wait_for(key, names=("disparity",), timeout=30.0)["disparity"]
            assert disparity.image.width == 320 and disparity.image.height == 240
        deadline, values = time.monotonic() + 30.0, {}
        while time.monotonic() < deadline:
            with harness.lock:
                seen = len(harness.diagnostics)
            _, values = harness.diagnostic_values(since=max(seen - 1, 0))
            if int(values.get("adaptation steps", 0)) > 0 and int(values["processed"]) == SETS:
                break
            time.sleep(0.5)
        steps = int(values["adaptation steps"])
        assert 0 < steps <= SETS  # a step needs a new set
        assert int(values["adaptation swaps"]) == steps
        assert values["adaptation state"] == "adapting"
        assert int(values["adaptation rollbacks"]) <= int(values["adaptation checks"]) <= steps // 2
        assert float(values["adaptation loss last"]) > 0 and float(values["adaptation loss mean"]) > 0
        assert backend.net is not shipped  # the improved weights are the ones inference runs
        assert int(values["processed"]) == SETS and int(values["failed"]) == 0
    finally:
        harness.close()  # destroy_node stops the adaptation and saves the weights
    adapted = load_model(weights=saved)
    assert adapted.config.name == "tiny"
    record = json.loads(saved.with_suffix(".json").read_text())["info"]["online_adaptation"]
    assert (record["frames_per_step"], record["photometric_scales"], record["lr"]) == (3, 3, 1e-4)
    assert 0 < record["steps"] <= SETS
    # checked every 2 steps and once more before the save at shutdown when the last step was not checked
    assert record["check_every"] == 2 and record["checks"] == -(-record["steps"] // 2)
    original = load_model("tiny").net.state_dict()
    assert max(float((v - original[k]).abs().max()) for k, v in adapted.net.state_dict().items()
               if v.is_floating_point()) > 0


@pytest.mark.parametrize("params, needle", [
    ({"backend": "onnxruntime"}, "parameter adapt = True is not allowed with backend onnxruntime"),
    ({"backend": "torch", "adapted_weights_path": "/tmp/adapted.pt"}, "parameter adapted_weights_path = "),
], ids=["backend", "path"])
def test_adapt_needs_the_torch_backend(params, needle) -> None:
    from ros2_stereo_depth.ros.node import StereoDepthNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = {"config": "tiny", "threads": 1, "adapt": True, **params}
        with pytest.raises(ParameterError, match=needle) as error:
            StereoDepthNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
        assert "\n" not in str(error.value)
    finally:
        rclpy.try_shutdown(context=context)
