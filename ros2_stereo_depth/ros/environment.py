"""The one home of the ROS environment defaults (no rclpy import: they must be set before rclpy.init).

`apply_dds_defaults`: every executable of the package (stereo_depth_node, its lifecycle variant,
stereo_source) calls it first, so a plain `ros2 run` gets the Fast DDS profile that delivers large images
(fastdds_profile.xml, next to this file; installed with the package). A value already set wins.
`apply_local_defaults`: what `make demo`, `stereo-depth demo` and the tests add on top: the PyPI ROS
wheels' ament index (the venv prefix), Fast DDS, and discovery on this host only.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import MutableMapping

FASTDDS_PROFILE = Path(__file__).resolve().with_name("fastdds_profile.xml")
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def apply_dds_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")  # Fast DDS is the ROS 2 default RMW
    if rmw.startswith("rmw_fastrtps"):
        environ.setdefault(PROFILE_VARIABLE, str(FASTDDS_PROFILE))


def apply_local_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    environ.setdefault("PYTHONUNBUFFERED", "1")
    apply_dds_defaults(environ)
