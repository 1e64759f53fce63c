"""One set of defaults: every parameter the robot-side nodes and the link emulator declare has the
value config/*.yaml gives it, and the paper's exact semantic scheme is one parameter away. The
nodes are built in this process (real rclpy nodes; nothing needs to cross DDS)."""

from __future__ import annotations

import importlib
import os
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from rosutil import have_interfaces, ros_env

pytestmark = pytest.mark.skipif(not have_interfaces(),
                                reason="msg/ interfaces not built: run scripts/build_interfaces.sh")

ROOT = Path(__file__).resolve().parents[1]
# parameters a YAML file leaves out on purpose: the semantic profile gives them
FROM_PROFILE = {"xi", "period"}
# parameters every rclpy node declares
ROS_OWN = {"use_sim_time", "start_type_description_service"}


@contextmanager
def ros(*args):
    import rclpy

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in ros_env().items() if k.startswith(("ROS_", "RMW_"))})
    rclpy.init(args=["test", "--ros-args", *args])
    try:
        yield
    finally:
        rclpy.try_shutdown()
        os.environ.clear()
        os.environ.update(saved)


def _node(name):
    module = importlib.import_module(f"semcomm_ros.nodes.{name}")
    cls = {"encoder_node": "EncoderNode", "link_emulator": "LinkEmulator", "scene_source": "SceneSource",
           "segmentation_node": "SegmentationNode"}[name]
    return getattr(module, cls)()


@pytest.mark.parametrize("config,name", [("robot.yaml", "encoder_node"), ("robot.yaml", "scene_source"),
                                         ("robot.yaml", "segmentation_node"), ("link.yaml", "link_emulator")])
def test_declared_defaults_equal_the_yaml(config, name):
    params = yaml.safe_load((ROOT / "config" / config).read_text())[f"/**/{name}"]["ros__parameters"]
    with ros():
        node = _node(name)
        try:
            declared = {n: p.value for n, p in node._parameters.items()
                        if n not in ROS_OWN and not n.startswith("qos_overrides.")}
            close = getattr(node, "close", None)
            if close:
                close()
        finally:
            node.destroy_node()
    assert set(params) <= set(declared), f"{config} sets {set(params) - set(declared)} that {name} does not declare"
    # deprecated names are declared for one release, and no YAML of ours uses them
    renamed = set(getattr(importlib.import_module(f"semcomm_ros.nodes.{name}"), "RENAMED", {}))
    missing = set(declared) - set(params) - renamed - (FROM_PROFILE if name == "encoder_node" else set())
    assert not missing, f"{config} leaves out {missing} of {name}"
    differ = {k: (declared[k], v) for k, v in params.items() if declared[k] != v}
    assert not differ, f"{name}: declared default != {config} (declared, yaml): {differ}"


def test_tracked_profile_by_default_and_the_paper_one_parameter_away():
    from semcomm_ros.codec.semantic import PROFILE_DEFAULTS

    for args, profile in (((), "tracked"), (("-p", "profile:=paper"), "paper")):
        with ros(*args):
            node = _node("encoder_node")
            try:
                got = {k: node.get_parameter(k).value for k in ("profile", "xi", "period")}
                xi, period = node.sender.sem.xi, node.sender.sem.period
                node.close()
            finally:
                node.destroy_node()
        want = PROFILE_DEFAULTS[profile]
        assert got == {"profile": profile, "xi": want["xi"], "period": want["period"]}, got
        assert (xi, period) == (want["xi"], want["period"])
    assert PROFILE_DEFAULTS["paper"]["period"] == 4 and PROFILE_DEFAULTS["paper"]["xi"] == 6.0


def test_robot_images_reliable_and_overridable_for_a_best_effort_camera():
    """Robot-side images are reliable (512x512 rgb8 frames go out in UDP fragments, which best
    effort lost 40 % of on loopback); a best-effort camera driver is matched by overriding the
    subscription's reliability with ROS's standard qos_overrides parameter."""
    from rclpy.qos import ReliabilityPolicy

    def reliability(node, topic):
        return next(s.qos_profile.reliability for s in node.subscriptions if s.topic_name.endswith(topic))

    with ros():
        node = _node("encoder_node")
        try:
            assert reliability(node, "/camera/image_raw") == ReliabilityPolicy.RELIABLE
            node.close()
        finally:
            node.destroy_node()
    with ros("-p", "qos_overrides./semcomm/camera/image_raw.subscription.reliability:=best_effort"):
        node = _node("encoder_node")
        try:
            assert reliability(node, "/camera/image_raw") == ReliabilityPolicy.BEST_EFFORT
            assert reliability(node, "/labels") == ReliabilityPolicy.RELIABLE
            node.close()
        finally:
            node.destroy_node()


def test_descriptors_come_from_the_configs_ranges():
    """One range per field: each parameter named as a config field has that field's range,
    choices, read-only flag and description in its descriptor (nothing typed twice)."""
    from semcomm_ros.link import LinkParams
    from semcomm_ros.nodes.link_emulator import LINK_PARAMETERS
    from semcomm_ros.sender import SenderConfig

    for name, config, fields in (("encoder_node", SenderConfig, tuple(SenderConfig.RANGES)),
                                 ("link_emulator", LinkParams, LINK_PARAMETERS)):
        with ros():
            node = _node(name)
            try:
                for field in fields:
                    spec, d = config.RANGES[field], node.describe_parameter(field)
                    assert d.description.startswith(spec.description) and d.read_only == spec.read_only, field
                    ends = [(r.from_value, r.to_value) for r in (*d.integer_range, *d.floating_point_range)]
                    assert ends == ([] if spec.choices or not spec.numeric else [(spec.lo, spec.hi)]), (field, ends)
                    assert all(str(c) in d.additional_constraints for c in spec.choices), field
                getattr(node, "close", lambda: None)()
            finally:
                node.destroy_node()


def test_old_parameter_names_still_work_and_warn(capfd):
    """iframe_period and steps, the names before every parameter was named as its config field,
    still set period / num_steps for one release, given at start-up or set at run time, each time
    with a warning naming the new parameter; the old name mirrors the new one's value."""
    from rclpy.parameter import Parameter

    with ros("-p", "iframe_period:=8"):
        node = _node("encoder_node")
        try:
            assert node.get_parameter("period").value == 8 and node.sender.sem.period == 8
            assert node.set_parameters([Parameter("iframe_period", value=16)])[0].successful
            assert node.get_parameter("period").value == 16 and node.sender.cfg.period == 16
            assert node.sender.sem.period == 16
            assert node.set_parameters([Parameter("period", value=4)])[0].successful
            assert node.get_parameter("iframe_period").value == 4
            assert not node.set_parameters([Parameter("iframe_period", value=0)])[0].successful  # its range
            assert node.sender.cfg.period == 4
            node.close()
        finally:
            node.destroy_node()
    with ros("-p", "synthesize:=false", "-p", "steps:=2"):
        from semcomm_ros.nodes.decoder_node import DecoderNode

        node = DecoderNode()
        try:
            assert node.get_parameter("num_steps").value == 2 and node.config.num_steps == 2
            assert node.set_parameters([Parameter("steps", value=3)])[0].successful
            assert node.get_parameter("num_steps").value == 3 and node.config.num_steps == 3
            node.close()
        finally:
            node.destroy_node()
    err = capfd.readouterr().err
    assert err.count("parameter iframe_period is deprecated") == 3 and "use period" in err, err
    assert err.count("parameter steps is deprecated") == 2 and "use num_steps" in err, err


def test_library_logs_reach_ros_at_every_severity_and_python_again_once_rclpy_is_down(caplog):
    """route_logging: one rclpy call site per severity (rclpy raises when a site changes severity),
    and a route that outlives its node (rclpy shut down) hands the records back to Python's logging."""
    import logging

    from semcomm_ros.nodes.common import route_logging

    lib = logging.getLogger("semcomm_ros.test_route")
    with ros():
        from rclpy.node import Node

        node = Node("route_test")
        route_logging(node)
        for _ in range(2):
            lib.info("an info line")
            lib.warning("a warning")  # raised ValueError when it shared the info line's call site
            lib.error("an error")
        assert not logging.getLogger("semcomm_ros").propagate
        node.destroy_node()
    with caplog.at_level(logging.WARNING, logger="semcomm_ros"):
        lib.warning("after the node")
    assert "after the node" in caplog.text
    assert logging.getLogger("semcomm_ros").propagate
