"""What every node shares: parameter declaration with descriptors and ranges (rclpy enforces the
ranges, so callbacks check only what a range cannot say), and a ``main`` that spins until Ctrl-C."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Callable

NAMESPACE = "semcomm"


def _limit_threads():
    # The robot and operator machines here have 2 shared cores; nodes must not oversubscribe them.
    # Through the environment, not torch.set_num_threads: importing torch here cost every node
    # ~500 MB RSS, and only segmentation and the decoder need it (torch reads OMP_NUM_THREADS
    # when it is first imported).
    n = str(max(1, int(os.environ.get("SEMCOMM_TORCH_THREADS", "1"))))
    os.environ["OMP_NUM_THREADS"] = n
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))


def route_logging(node, name: str = "semcomm_ros") -> None:
    """Send the library's Python ``logging`` records (codec warnings, ...) through the node's ROS
    logger, so they reach /rosout and the launch log like the node's own lines."""
    import logging

    ros = node.get_logger()

    class _ToRos(logging.Handler):
        def emit(self, record):
            level = record.levelno
            fn = ros.error if level >= logging.ERROR else ros.warning if level >= logging.WARNING else \
                ros.info if level >= logging.INFO else ros.debug
            fn(f"{record.name}: {record.getMessage()}")

    logger = logging.getLogger(name)
    logger.handlers = [h for h in logger.handlers if type(h).__name__ != "_ToRos"]  # one node, one route
    logger.addHandler(_ToRos())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not printed a second time by Python's last-resort handler


def declare(node, name: str, default, description: str, lo=None, hi=None, step=None,
            read_only: bool = False, choices: tuple | None = None):
    """Declare a parameter with a descriptor; numeric ones get a range the middleware enforces."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(name=name, description=description, read_only=read_only)
    if choices:
        desc.additional_constraints = "one of: " + ", ".join(map(str, choices))
    if lo is not None and hi is not None:
        if isinstance(default, bool):
            pass
        elif isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(step or 0))]
        elif isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi),
                                                            step=float(step or 0.0))]
        desc.additional_constraints = (desc.additional_constraints + "; " if desc.additional_constraints
                                       else "") + f"range [{lo}, {hi}]"
    return node.declare_parameter(name, default, desc).value


def set_result(ok: bool, reason: str = ""):
    from rcl_interfaces.msg import SetParametersResult

    return SetParametersResult(successful=ok, reason=reason)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(node_factory: Callable, args=None, threads: int = 1) -> int:
    """rclpy.init, build the node, spin until Ctrl-C / SIGTERM, clean shutdown.

    rclpy's own signal handler is off: it shuts the context down at once, while a callback or a
    node's worker thread may still be publishing (an ERROR or a traceback on every Ctrl-C).
    Here Ctrl-C and SIGTERM raise KeyboardInterrupt in the spinning thread instead, and the
    context goes down only after the node's ``close()`` has stopped its own threads.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    _limit_threads()
    # `kill -USR1 <pid>` writes every thread's Python stack to the node's stderr: a node that
    # stops working without dying (the soak's bench does this when a restart brings no frames)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    rclpy.init(args=sys.argv if args is None else args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = node_factory()
        executor = MultiThreadedExecutor(threads) if threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            # a bounded wait, so that a signal is seen even when no message comes
            executor.spin_once(timeout_sec=0.25)
            if getattr(node, "fatal", None):  # a worker thread's failure the node cannot run without
                print(f"{node.get_name()}: {node.fatal}", file=sys.stderr)
                return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
