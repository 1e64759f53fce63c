"""What every node shares: parameter declaration from the configs' ranges tables (one parameter per
field, named as the field; rclpy enforces the ranges, so callbacks check only what a range cannot
say), deprecated parameter names, and a ``main`` that spins until Ctrl-C."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Callable

from semcomm_ros.ranges import Range

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
    import weakref

    ros = node.get_logger()
    alive = weakref.ref(node)
    logger = logging.getLogger(name)

    class _ToRos(logging.Handler):
        def emit(self, record):
            node = alive()
            if node is None or not node.context.ok():
                # the node is gone or rclpy shut down (a test that built a node in-process): records
                # go back to Python's logging, this one included (propagate is read after the handlers)
                logger.removeHandler(self)
                logger.propagate = True
                return
            try:
                text = f"{record.name}: {record.getMessage()}"
                # rclpy ties a logging call site to one severity (a second one raises ValueError)
                if record.levelno >= logging.ERROR:
                    ros.error(text)
                elif record.levelno >= logging.WARNING:
                    ros.warning(text)
                elif record.levelno >= logging.INFO:
                    ros.info(text)
                else:
                    ros.debug(text)
            except Exception:  # noqa: BLE001 - a log line must never take the caller down
                self.handleError(record)

    logger.handlers = [h for h in logger.handlers if type(h).__name__ != "_ToRos"]  # one node, one route
    logger.addHandler(_ToRos())
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not printed a second time by Python's last-resort handler


def declare(node, name: str, default, spec: Range, note: str = ""):
    """Declare one parameter from its :class:`~semcomm_ros.ranges.Range`: the description (plus
    ``note``), the choices, and a range the middleware enforces where both ends are finite, go
    into the descriptor. The default takes the range's type (an integer range, an integer)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    if spec.numeric and not isinstance(default, bool):
        default = int(default) if spec.integer else float(default)
    desc = ParameterDescriptor(name=name, description=spec.description + note, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(map(str, spec.choices))
    elif spec.numeric:
        desc.additional_constraints = "range " + spec.text().removeprefix("within ")
        if spec.lo is not None and spec.hi is not None:
            if spec.integer:
                desc.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi),
                                                   step=int(spec.step or 0))]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(spec.lo), to_value=float(spec.hi),
                                                                step=float(spec.step or 0.0))]
    return node.declare_parameter(name, default, desc).value


def declare_fields(node, config, names, notes: dict[str, str] | None = None) -> dict:
    """One parameter per field ``names`` of ``config``, named as the field, its default the field's
    value in ``config``, its descriptor from ``type(config).RANGES``; returns name -> value in
    force (the defaults, or what the command line / params file gave)."""
    ranges = type(config).RANGES
    notes = notes or {}
    return {n: declare(node, n, getattr(config, n), ranges[n], notes.get(n, "")) for n in names}


def declare_deprecated(node, renamed: dict[str, str]) -> dict:
    """Old parameter names kept for one release, ``{old: new}`` (``new`` declared already).

    Each old name is declared like its new parameter and mirrors its value. Given at start-up, it
    sets the new parameter; set at run time, it is forwarded to the new one in the same atomic
    set (a pre-set callback, so the node's validation sees the new name). Either way a warning
    names the new parameter. Returns new name -> value for the old names given at start-up.
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

    given = {}
    for old, new in renamed.items():
        d = node.describe_parameter(new)
        desc = ParameterDescriptor(name=old, type=d.type, description=f"deprecated, use {new}: {d.description}",
                                   additional_constraints=d.additional_constraints, read_only=d.read_only,
                                   floating_point_range=d.floating_point_range, integer_range=d.integer_range)
        # declared without a value: it has one only if the command line or a params file gave it
        value = node.declare_parameter(old, node.get_parameter(new).type_, desc).value
        if value is not None:
            _warn_renamed(node, old, new, value)
            result = node.set_parameters([Parameter(new, value=value)])[0]
            if not result.successful:
                raise ValueError(f"{old}:={value!r} (for {new}) refused: {result.reason}")
            given[new] = value
        node.set_parameters([Parameter(old, value=node.get_parameter(new).value)])
    forward = {**renamed, **{new: old for old, new in renamed.items()}}

    def mirror(params):
        # each name of a pair carries the other's value: the old name sets the new parameter, the
        # new name keeps the old one equal to it (the new name wins when both come in one set)
        by_name = {p.name: p for p in params}
        for p in params:
            if p.name in renamed:
                _warn_renamed(node, p.name, renamed[p.name], p.value)
        for p in params:
            other = forward.get(p.name)
            if other and (other not in by_name or p.name not in renamed):
                by_name[other] = Parameter(other, p.type_, p.value)
        return list(by_name.values())

    node.add_pre_set_parameters_callback(mirror)
    return given


def _warn_renamed(node, old: str, new: str, value) -> None:
    node.get_logger().warning(f"parameter {old} is deprecated and will be removed: use {new} "
                              f"({old}:={value!r} sets {new})")


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
