"""A small stand-in for ``ros2 topic echo`` / ``ros2 topic pub`` (the ``ros2`` CLI is not
installable from PyPI): messages as JSON lines, ``uint8[]`` fields as ``{"__bytes__": hex}``.

    python -m semcomm_ros.ros.topic echo /semcomm/link_stats semcomm_ros/msg/LinkStats --count 3
    python -m semcomm_ros.ros.topic pub spec.json --rate 10 --duration 5
    python -m semcomm_ros.ros.topic param /semcomm/encoder_node xi:=8 target_kbps:=2.0
    python -m semcomm_ros.ros.topic param /semcomm/encoder_node --get xi target_kbps
    python -m semcomm_ros.ros.topic param /semcomm/encoder_node --list

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
    # deferred: convert loads numpy, OpenCV and the codec, which ros.bag (it imports msg_class) does without
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
    from semcomm_ros.ros import qos  # deferred: imports rclpy; ros.bag reads bags without ROS

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
    try:
        publish_spec(node, spec, args.rate, args.duration, args.qos)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


TYPE_NAMES = {1: "bool", 2: "integer", 3: "double", 4: "string", 5: "byte array", 6: "bool array",
              7: "integer array", 8: "double array", 9: "string array"}


def _call(node, srv_type, target: str, service: str, request, timeout: float):
    import rclpy

    cli = node.create_client(srv_type, f"{target}/{service}")
    try:
        if not cli.wait_for_service(timeout_sec=timeout):
            raise LookupError(f"no node {target} answering")
        future = cli.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f"{target}/{service}: no answer within {timeout} s")
        return future.result()
    finally:
        node.destroy_client(cli)


def describe_parameters(node, target: str, names: list[str] | None = None, timeout: float = 20.0) -> dict:
    """name -> ParameterDescriptor of ``target``'s parameters (all of them when ``names`` is None)."""
    from rcl_interfaces.srv import DescribeParameters, ListParameters

    if names is None:
        names = list(_call(node, ListParameters, target, "list_parameters", ListParameters.Request(),
                           timeout).result.names)
    res = _call(node, DescribeParameters, target, "describe_parameters", DescribeParameters.Request(names=names),
                timeout)
    return {d.name: d for d in res.descriptors}


def get_parameters(node, target: str, names: list[str], timeout: float = 20.0) -> dict:
    """name -> Python value (None for a parameter the node does not have)."""
    from rcl_interfaces.srv import GetParameters

    res = _call(node, GetParameters, target, "get_parameters", GetParameters.Request(names=names), timeout)
    return {n: _from_value(v) for n, v in zip(names, res.values)}


def _from_value(v):
    field = {1: "bool_value", 2: "integer_value", 3: "double_value", 4: "string_value", 5: "byte_array_value",
             6: "bool_array_value", 7: "integer_array_value", 8: "double_array_value", 9: "string_array_value"}
    return None if v.type not in field else (lambda x: list(x) if not isinstance(x, (bool, int, float, str)) else x)(
        getattr(v, field[v.type]))


def _to_value(name: str, value, declared: int | None):
    """A ParameterValue of the declared type: an integer is taken for a double; anything else of
    the wrong type is refused naming both types."""
    from rcl_interfaces.msg import ParameterType, ParameterValue

    T = ParameterType
    if isinstance(value, bool):
        given = T.PARAMETER_BOOL
    elif isinstance(value, int):
        given = T.PARAMETER_INTEGER
    elif isinstance(value, float):
        given = T.PARAMETER_DOUBLE
    elif isinstance(value, str):
        given = T.PARAMETER_STRING
    else:
        raise ValueError(f"{name}: only bool, integer, double or string values, got {value!r}")
    if declared == T.PARAMETER_DOUBLE and given == T.PARAMETER_INTEGER:
        value, given = float(value), T.PARAMETER_DOUBLE
    if declared not in (None, T.PARAMETER_NOT_SET) and declared != given:
        raise ValueError(f"{name} has type {TYPE_NAMES.get(declared, declared)}; got "
                         f"{TYPE_NAMES[given]} {value!r}")
    pv = ParameterValue(type=given)
    setattr(pv, {T.PARAMETER_BOOL: "bool_value", T.PARAMETER_INTEGER: "integer_value",
                 T.PARAMETER_DOUBLE: "double_value", T.PARAMETER_STRING: "string_value"}[given], value)
    return pv


def set_parameters(node, target: str, values: dict, timeout: float = 20.0) -> list[dict]:
    """Set parameters of a running node; one ``{name, successful, reason}`` per value. A value of
    the wrong type is refused here, naming the parameter's type (an integer for a double is fine)."""
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import SetParameters

    declared = describe_parameters(node, target, list(values), timeout)
    req, results = SetParameters.Request(), {}
    for name, value in values.items():
        d = declared.get(name)
        if d is None or d.type == 0:
            results[name] = {"name": name, "successful": False, "reason": f"{target} has no parameter {name!r}"}
            continue
        try:
            req.parameters.append(Parameter(name=name, value=_to_value(name, value, d.type)))
        except ValueError as exc:
            results[name] = {"name": name, "successful": False, "reason": str(exc)}
    if req.parameters:
        res = _call(node, SetParameters, target, "set_parameters", req, timeout)
        for p, r in zip(req.parameters, res.results):
            results[p.name] = {"name": p.name, "successful": r.successful, "reason": r.reason}
    return [results[n] for n in values]


def publish_spec(node, spec: list[dict], rate: float, duration: float, qos_name: str = "stats") -> int:
    """Publish each entry of ``spec`` (``{"topic", "type", "fields"}``) at ``rate`` Hz for
    ``duration`` s from ``node``; returns the rounds published."""
    import rclpy

    pubs = []
    for entry in spec:
        cls = msg_class(entry["type"])
        pubs.append((node.create_publisher(cls, entry["topic"], _qos(qos_name)), fill(cls(), entry.get("fields", {}))))
    start = time.monotonic()
    end, rounds = start + duration, 0
    try:
        while time.monotonic() < end:
            for pub, msg in pubs:
                pub.publish(msg)
            rounds += 1
            # spin until the next round is due: spin_once returns after any one callback, and a
            # node with busy subscriptions would otherwise publish as fast as it can
            due = start + rounds / rate
            while (left := due - time.monotonic()) > 0:
                rclpy.spin_once(node, timeout_sec=left)
    finally:
        for pub, _ in pubs:
            node.destroy_publisher(pub)
    return rounds


def cmd_param(args) -> int:
    """``param NODE name:=value ...`` sets (prints each result as JSON; exit 1 if any was refused),
    ``param NODE --get name ...`` prints values, ``param NODE --list`` names, types, ranges."""
    import rclpy

    rclpy.init()
    node = rclpy.create_node(f"semcomm_param_{int(time.time() * 1000) % 100000}")
    try:
        if args.list:
            for name, d in sorted(describe_parameters(node, args.node, None, args.timeout).items()):
                rng = [f"[{r.from_value}, {r.to_value}]" for r in (*d.floating_point_range, *d.integer_range)]
                print(json.dumps({"name": name, "type": TYPE_NAMES.get(d.type, d.type), "read_only": d.read_only,
                                  "range": rng[0] if rng else None, "description": d.description}))
            return 0
        if args.get:
            print(json.dumps(get_parameters(node, args.node, args.get, args.timeout)), flush=True)
            return 0
        if not args.assignments:
            print("param: give name:=value assignments, --get NAME ... or --list", file=sys.stderr)
            return 2
        values = {}
        for assignment in args.assignments:
            name, sep, text = assignment.partition(":=")
            if not sep:
                print(f"param: expected NAME:=VALUE, got {assignment!r}", file=sys.stderr)
                return 2
            try:
                values[name] = json.loads(text)
            except ValueError:
                values[name] = text  # a bare word is a string
        results = set_parameters(node, args.node, values, args.timeout)
        print(json.dumps(results), flush=True)
        return 0 if all(r["successful"] for r in results) else 1
    except (LookupError, TimeoutError) as exc:
        print(f"param: {exc}", file=sys.stderr)
        return 2
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
    r = sub.add_parser("param", help="parameters of a running node: NODE name:=value ... | --get NAME ... | --list")
    r.add_argument("node", help="full node name, e.g. /semcomm/encoder_node")
    r.add_argument("assignments", nargs="*", metavar="NAME:=VALUE")
    r.add_argument("--get", nargs="+", metavar="NAME", help="print these parameters' values as JSON")
    r.add_argument("--list", action="store_true", help="every parameter: type, read-only, range, description")
    r.add_argument("--timeout", type=float, default=20.0)
    args = p.parse_args(argv)
    return {"echo": cmd_echo, "pub": cmd_pub, "param": cmd_param}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
