"""Shared test set-up.

ROS: each pytest process gets its own random ROS_DOMAIN_ID (100..200) before anything calls
rclpy.init, so tests running concurrently (other engineers, CI shards) never see each other's topics.
The other ROS variables get the package's local defaults (ros/environment.py, the one home for them),
so plain `pytest test/x.py` works too.
"""
import os
import random

from ros2_stereo_depth.ros.environment import apply_local_defaults

os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(100, 200))
apply_local_defaults()

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _ros_home(tmp_path_factory: pytest.TempPathFactory):
    """Caches (ONNX exports, engines) and ROS logs go to a session folder, never the user's ~/.ros; node
    processes started by tests inherit it."""
    before = os.environ.get("ROS_HOME")
    os.environ["ROS_HOME"] = str(tmp_path_factory.mktemp("ros_home"))
    yield
    if before is None:
        os.environ.pop("ROS_HOME", None)
    else:
        os.environ["ROS_HOME"] = before


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (2 cores shared with other jobs), restored after the module:
    set here, never at import, so a module's setting does not leak into the next."""
    from torch_threads import torch_threads

    with torch_threads(1):
        yield
