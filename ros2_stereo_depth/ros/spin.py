"""The one `main()` body of our executables: init, spin until Ctrl-C, clean shutdown."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Configuration problems (bad parameter, missing weights/engine): one clear line, exit 2.
        print(f"{name}: error: {error}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
