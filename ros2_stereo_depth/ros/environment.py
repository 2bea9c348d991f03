"""The one home of the ROS environment defaults (no rclpy import: they must be set before rclpy.init).

`apply_dds_defaults`: every executable of the package (stereo_depth_node, its lifecycle variant,
stereo_source) calls it first, so a plain `ros2 run` gets the Fast DDS profile that delivers large images
(fastdds_profile.xml, next to this file; installed with the package). A value already set wins.
`apply_local_defaults`: what `make demo`, `stereo-depth demo` and the tests add on top: the PyPI ROS
wheels' ament index (the venv prefix), Fast DDS, discovery on this host only, and one malloc arena.
`limit_malloc_arenas`: the executables' own fallback for that last one.
"""
from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import MutableMapping

FASTDDS_PROFILE = Path(__file__).resolve().with_name("fastdds_profile.xml")
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"
# glibc gives every thread that allocates an arena of its own (up to 8 per core) and keeps what is freed
# in it there: the node's threads (executor, worker, matching bands, SGBM) each held on to a frame's
# temporaries. One arena: node peak RSS, `fast` at 1280x720 end to end over DDS, 540-580 -> 497-500 MiB, no
# slower (BENCHMARKS.md). Read by glibc at process start-up; a value the user set wins.
ARENA_VARIABLE = "MALLOC_ARENA_MAX"
ARENAS = 1
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def apply_dds_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")  # Fast DDS is the ROS 2 default RMW
    if rmw.startswith("rmw_fastrtps"):
        environ.setdefault(PROFILE_VARIABLE, str(FASTDDS_PROFILE))


def apply_local_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    environ.setdefault("PYTHONUNBUFFERED", "1")
    environ.setdefault(ARENA_VARIABLE, str(ARENAS))  # for the node processes started with this environment
    apply_dds_defaults(environ)


def limit_malloc_arenas(environ: MutableMapping[str, str] = os.environ) -> bool:
    """ARENAS malloc arenas for this process from now on (`mallopt`), unless MALLOC_ARENA_MAX is set (glibc
    has then applied it) or the C library is not glibc. Threads that allocated before keep their arenas,
    so the variable set before start-up (`apply_local_defaults`, the launch file) does more: 75 against
    35 MiB less peak in one measurement. True when it applied the limit."""
    if ARENA_VARIABLE in environ or not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, ARENAS))
    except (OSError, AttributeError):  # another C library: nothing to limit
        return False
