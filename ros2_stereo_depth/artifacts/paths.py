"""Where artifacts built on this machine live: $ROS_HOME/stereo_depth (ROS_HOME defaults to ~/.ros).

A fixed place, because `ros2 launch` starts the node in whatever directory the user happens to be in.
"""
from __future__ import annotations

import os
from pathlib import Path

ENGINE_DIR_ENV = "STEREO_DEPTH_ENGINE_DIR"  # replaces the engine folder


def stereo_depth_home() -> Path:
    return Path(os.environ.get("ROS_HOME") or "~/.ros").expanduser() / "stereo_depth"


def default_engine_dir() -> Path:
    """$STEREO_DEPTH_ENGINE_DIR, else $ROS_HOME/stereo_depth/engines."""
    explicit = os.environ.get(ENGINE_DIR_ENV)
    return Path(explicit).expanduser() if explicit else stereo_depth_home() / "engines"


def onnx_cache_dir() -> Path:
    return stereo_depth_home() / "onnx"
