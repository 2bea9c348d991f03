"""The one `main()` body of our executables: DDS defaults, init, spin until Ctrl-C, clean shutdown.

Start-up problems (a bad parameter, a missing params file or weights, a corrupt file) are one line on
stderr and exit status 2, never a traceback: the node's constructor is the only place they can come from.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable

from .environment import apply_dds_defaults, limit_malloc_arenas


def _missing_params_file(args: list[str]) -> str | None:
    for flag, value in zip(args, args[1:]):
        if flag == "--params-file" and not Path(value).is_file():
            return f"--params-file {value}: no such file"
    return None


def run_node(make_node: Callable[[], object], name: str, args: list[str] | None = None) -> int:
    limit_malloc_arenas()  # before rclpy, the worker and the matching start their threads
    apply_dds_defaults()  # before rclpy creates the DDS participant
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    argv = sys.argv if args is None else args
    problem = _missing_params_file(argv)
    if problem:
        print(f"{name}: error: {problem}", file=sys.stderr)
        return 2
    # SIGINT and SIGTERM raise KeyboardInterrupt instead of shutting the context down under us (rclpy's
    # own handlers): the node can still log its summary to /rosout and destroy itself before rclpy
    # shuts down. Installed explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as error:  # noqa: BLE001 - rcl's own argument errors: one line
        print(f"{name}: error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    node = None
    try:
        try:
            node = make_node()
        except Exception as error:  # noqa: BLE001 - configuration problems: one clear line, exit 2
            kind = "" if isinstance(error, (ValueError, FileNotFoundError, RuntimeError)) else f"{type(error).__name__}: "
            print(f"{name}: error: {kind}{error}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while True:  # short waits: Python runs the SIGINT handler between them, even with no timer pending
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
