"""Shared test set-up.

ROS: each pytest process gets its own random ROS_DOMAIN_ID (100..200) before anything calls
rclpy.init, so tests running concurrently (other engineers, CI shards) never see each other's topics.
The other ROS variables get the defaults the Makefile uses, so plain `pytest test/x.py` works too.
"""
import os
import random
import sys

os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(100, 200))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)  # the PyPI ROS wheels' ament index is the venv

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
