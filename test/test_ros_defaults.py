"""One set of defaults: every parameter the robot-side nodes and the link emulator declare has the
value config/*.yaml gives it, and the paper's exact semantic scheme is one parameter away. The
nodes are built in this process (real rclpy nodes; nothing needs to cross DDS)."""

from __future__ import annotations

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
FROM_PROFILE = {"xi", "iframe_period"}
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
    import importlib

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
    missing = set(declared) - set(params) - (FROM_PROFILE if name == "encoder_node" else set())
    assert not missing, f"{config} leaves out {missing} of {name}"
    differ = {k: (declared[k], v) for k, v in params.items() if declared[k] != v}
    assert not differ, f"{name}: declared default != {config} (declared, yaml): {differ}"


def test_tracked_profile_by_default_and_the_paper_one_parameter_away():
    from semcomm_ros.codec.semantic import PROFILE_DEFAULTS

    for args, profile in (((), "tracked"), (("-p", "profile:=paper"), "paper")):
        with ros(*args):
            node = _node("encoder_node")
            try:
                got = {k: node.get_parameter(k).value for k in ("profile", "xi", "iframe_period")}
                xi, period = node.sender.sem.xi, node.sender.sem.period
                node.close()
            finally:
                node.destroy_node()
        want = PROFILE_DEFAULTS[profile]
        assert got == {"profile": profile, "xi": want["xi"], "iframe_period": want["period"]}, got
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
