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
