"""`stereo_depth_lifecycle_node`: the managed (lifecycle) variant of stereo_depth_node.

configure loads the backend, activate creates the publishers and subscriptions and starts the worker,
deactivate stops them, cleanup frees the backend; parameters, topics and outputs are stereo_depth_node's.
Drive it with `ros2 lifecycle set /stereo_depth_node configure` (then activate), or a lifecycle manager.
"""
from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from .node import PipelineOwner, StereoDepthPipeline
from .spin import run_node


class StereoDepthLifecycleNode(PipelineOwner, LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("stereo_depth_node", **kwargs)
        self.pipeline = StereoDepthPipeline(self)  # declares (and checks) the parameters

    def _stage(self, stage: str) -> TransitionCallbackReturn:
        try:
            getattr(self.pipeline, stage)()
        except Exception as error:  # noqa: BLE001 - a failed transition is reported, the node stays up
            self.get_logger().error(f"{stage} failed: {error}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._stage("configure")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._stage("activate")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._stage("deactivate")

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._stage("cleanup")

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.pipeline.deactivate()
        self.pipeline.cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    return run_node(StereoDepthLifecycleNode, "stereo_depth_lifecycle_node", args)


if __name__ == "__main__":
    sys.exit(main())
