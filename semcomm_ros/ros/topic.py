"""A small stand-in for ``ros2 topic echo`` / ``ros2 topic pub`` (the ``ros2`` CLI is not
installable from PyPI): messages as JSON lines, ``uint8[]`` fields as ``{"__bytes__": hex}``.

    python -m semcomm_ros.ros.topic echo /semcomm/link_stats semcomm_ros/msg/LinkStats --count 3
    python -m semcomm_ros.ros.topic pub spec.json --rate 10 --duration 5
    python -m semcomm_ros.ros.topic param /semcomm/encoder_node xi:=8.0 target_kbps:=2.0

``pub`` reads a JSON list of ``{"topic", "type", "fields"}`` and publishes each entry at ``--rate``
until ``--duration`` ends; ``echo`` takes ``TOPIC TYPE`` pairs and exits 0 once ``--count``
messages arrived on every topic, 1 on timeout.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time


def msg_class(type_name: str):
    """``pkg/msg/Name`` (or ``pkg/Name``) -> the generated class."""
    parts = type_name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type must look like pkg/msg/Name, got {type_name!r}")
    return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])


def to_jsonable(msg):
    from semcomm_ros.ros.convert import msg_to_dict

    def enc(v):
        if isinstance(v, bytes):
            return {"__bytes__": v.hex()}
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, list):
            return [enc(x) for x in v]
        return v

    return enc(msg_to_dict(msg))


def fill(msg, fields: dict):
    """Set fields (recursively) from a JSON dict as produced by :func:`to_jsonable`."""
    for name, value in fields.items():
        if not hasattr(msg, name) or name.startswith("_"):
            raise ValueError(f"{type(msg).__name__} has no field {name!r}")
        if isinstance(value, dict) and "__bytes__" in value:
            setattr(msg, name, bytes.fromhex(value["__bytes__"]))
        elif isinstance(value, dict):
            fill(getattr(msg, name), value)
        else:
            setattr(msg, name, value)
    return msg


def _qos(name: str):
    from semcomm_ros.ros import qos

    return qos.BY_NAME[name]


def cmd_echo(args) -> int:
    import rclpy

    if len(args.pairs) % 2:
        print("echo: expected TOPIC TYPE pairs", file=sys.stderr)
        return 2
    rclpy.init()
    node = rclpy.create_node(f"semcomm_echo_{int(time.time() * 1000) % 100000}")
    got: dict[str, int] = {}
    pairs = list(zip(args.pairs[0::2], args.pairs[1::2]))
    for topic, type_name in pairs:
        got[topic] = 0

        def cb(msg, topic=topic):
            if got[topic] >= args.count:
                return
            got[topic] += 1
            print(json.dumps({"topic": topic, "msg": to_jsonable(msg)}), flush=True)

        node.create_subscription(msg_class(type_name), topic, cb, _qos(args.qos))
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline and min(got.values()) < args.count:
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    missing = [t for t, n in got.items() if n < args.count]
    if missing:
        print(f"echo: timed out after {args.timeout} s waiting for {missing}", file=sys.stderr)
        return 1
    return 0


def cmd_pub(args) -> int:
    import rclpy

    with open(args.spec) as f:
        spec = json.load(f)
    rclpy.init()
    node = rclpy.create_node(f"semcomm_pub_{int(time.time() * 1000) % 100000}")
    pubs = []
    for entry in spec:
        cls = msg_class(entry["type"])
        msg = fill(cls(), entry.get("fields", {}))
        pubs.append((node.create_publisher(cls, entry["topic"], _qos(args.qos)), msg))
    end = time.monotonic() + args.duration
    try:
        while time.monotonic() < end:
            for pub, msg in pubs:
                pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=1.0 / args.rate)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def cmd_param(args) -> int:
    """Set parameters of a running node through its ``set_parameters`` service; prints each
    result (successful, reason) as JSON and exits 1 if any was refused."""
    import rclpy
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    rclpy.init()
    node = rclpy.create_node(f"semcomm_param_{int(time.time() * 1000) % 100000}")
    try:
        cli = node.create_client(SetParameters, f"{args.node}/set_parameters")
        if not cli.wait_for_service(timeout_sec=args.timeout):
            print(f"param: no node {args.node} answering", file=sys.stderr)
            return 2
        req = SetParameters.Request()
        for assignment in args.assignments:
            name, _, text = assignment.partition(":=")
            value = json.loads(text)
            pv = ParameterValue()
            if isinstance(value, bool):
                pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
            elif isinstance(value, int):
                pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
            elif isinstance(value, float):
                pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
            else:
                pv.type, pv.string_value = ParameterType.PARAMETER_STRING, str(value)
            req.parameters.append(Parameter(name=name, value=pv))
        future = cli.call_async(req)
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            print("param: no answer", file=sys.stderr)
            return 2
        results = [{"successful": r.successful, "reason": r.reason} for r in future.result().results]
        print(json.dumps(results), flush=True)
        return 0 if all(r["successful"] for r in results) else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m semcomm_ros.ros.topic", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo", help="print messages as JSON lines")
    e.add_argument("pairs", nargs="+", metavar="TOPIC TYPE")
    e.add_argument("--count", type=int, default=1, help="messages per topic before exiting")
    e.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (exit 1)")
    e.add_argument("--qos", choices=["link", "feedback", "stats", "sensor"], default="link")
    q = sub.add_parser("pub", help="publish messages from a JSON spec")
    q.add_argument("spec")
    q.add_argument("--rate", type=float, default=10.0, help="Hz")
    q.add_argument("--duration", type=float, default=10.0, help="seconds")
    q.add_argument("--qos", choices=["link", "feedback", "stats", "sensor"], default="stats")
    r = sub.add_parser("param", help="set parameters of a running node: NODE name:=json_value ...")
    r.add_argument("node", help="full node name, e.g. /semcomm/encoder_node")
    r.add_argument("assignments", nargs="+", metavar="NAME:=VALUE")
    r.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    return {"echo": cmd_echo, "pub": cmd_pub, "param": cmd_param}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
