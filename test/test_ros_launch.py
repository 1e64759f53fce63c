"""Launch files and params YAML are written for a normal ROS 2 install, where ``launch`` and
``launch_ros`` exist (they are not installable here). What can be checked without them: every
executable they start is a real node (console script, ament executable and module with main()),
every parameter they or the YAML files set is one the node declares (the node built in this
process, which needs the msg/ interfaces), every launch argument they read is declared, and every
file they point at exists."""

from __future__ import annotations

import ast
import functools
import importlib
import re
from pathlib import Path

import pytest
import yaml

from rosutil import have_interfaces

needs_interfaces = pytest.mark.skipif(not have_interfaces(),
                                      reason="msg/ interfaces not built: run scripts/build_interfaces.sh")
ROOT = Path(__file__).resolve().parents[1]
NODES_DIR = ROOT / "semcomm_ros" / "nodes"
LAUNCH = sorted((ROOT / "launch").glob("*.launch.py"))
CONFIGS = ["robot.yaml", "operator.yaml", "link.yaml", "replay.yaml"]


@functools.cache
def declared_params(executable: str) -> frozenset[str]:
    """What the node declares, read from the node itself built in this process: its parameters
    come from the configs' ranges tables, so their names are not literals in its source."""
    import tempfile

    from test_ros_defaults import ros

    with tempfile.TemporaryDirectory() as tmp:
        # the smallest node of each kind that declares everything: no YOLO, no weights, a bag to read
        args = {"segmentation_node": ["-p", "backend:=labels"], "decoder_node": ["-p", "synthesize:=false"],
                "bag_replay": ["-p", f"bag:={_bag(Path(tmp) / 'bag')}"]}.get(executable, [])
        with ros(*args):
            module = importlib.import_module(f"semcomm_ros.nodes.{executable}")
            node = next(v for v in vars(module).values()
                        if isinstance(v, type) and v.__module__ == module.__name__ and hasattr(v, "get_parameter"))()
            try:
                return frozenset(node._parameters)
            finally:
                close = getattr(node, "close", None)
                if close:
                    close()
                node.destroy_node()


def _bag(path: Path) -> Path:
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer

    from semcomm_ros.msg import SemanticFrame
    from semcomm_ros.ros.bag import typestore

    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/semcomm/semantic", "semcomm_ros/msg/SemanticFrame", typestore=typestore())
        writer.write(conn, 1, serialize_message(SemanticFrame()))
    return path


def executables() -> set[str]:
    setup = (ROOT / "setup.py").read_text()
    nodes = set(re.findall(r'"(\w+)"', re.search(r"NODES = \[(.*?)\]", setup).group(1)))
    cmake = (ROOT / "CMakeLists.txt").read_text()
    cm = set(re.search(r"set\(node_executables\s+([^)]*)\)", cmake).group(1).split())
    assert nodes == cm, f"setup.py console scripts {nodes} != CMake executables {cm}"
    return nodes


def launch_nodes(path: Path):
    tree = ast.parse(path.read_text())
    declared = set()
    used = set()
    nodes = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fname = getattr(node.func, "id", getattr(node.func, "attr", None))
        if fname == "DeclareLaunchArgument":
            declared.add(node.args[0].value)
        elif fname == "LaunchConfiguration":
            used.add(node.args[0].value)
        elif fname == "Node":
            kw = {k.arg: k.value for k in node.keywords}
            params = set()
            for item in getattr(kw.get("parameters"), "elts", []):
                if isinstance(item, ast.Dict):
                    params |= {k.value for k in item.keys}
            remaps = [(r.elts[0].value, r.elts[1].value) for r in getattr(kw.get("remappings"), "elts", [])]
            nodes.append(dict(package=kw["package"].value, executable=kw["executable"].value,
                              name=kw["name"].value, params=params, remaps=remaps))
        elif fname == "PathJoinSubstitution":
            parts = [e.value for e in node.args[0].elts if isinstance(e, ast.Constant)]
            if parts[:1] == ["config"]:
                assert (ROOT / Path(*parts)).is_file(), f"{path.name} names missing {'/'.join(parts)}"
    return declared, used, nodes


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file(path):
    exes = executables()
    declared, used, nodes = launch_nodes(path)
    assert nodes, f"{path.name} starts no node"
    assert used <= declared, f"{path.name} reads undeclared launch arguments {used - declared}"
    assert "def generate_launch_description" in path.read_text()
    for n in nodes:
        assert n["package"] == "semcomm_ros"
        assert n["executable"] in exes, f"{path.name}: unknown executable {n['executable']}"
        assert n["name"] == n["executable"], "node names match the YAML keys"
        src = (NODES_DIR / f"{n['executable']}.py").read_text()
        assert re.search(r"^def main\(", src, re.M), f"{n['executable']} has no main()"
        if have_interfaces():
            unknown = n["params"] - declared_params(n["executable"])
            assert not unknown, f"{path.name}: {n['executable']} does not declare {unknown}"
        for src_topic, _ in n["remaps"]:
            assert f'"{src_topic}"' in src, f"{path.name}: {n['executable']} has no topic {src_topic!r}"


def test_all_four_launch_files_exist():
    assert {p.name for p in LAUNCH} >= {"robot.launch.py", "operator.launch.py", "replay.launch.py",
                                        "demo.launch.py"}


@needs_interfaces
@pytest.mark.parametrize("name", CONFIGS)
def test_params_yaml(name):
    data = yaml.safe_load((ROOT / "config" / name).read_text())
    assert data
    for key, body in data.items():
        node = key.rsplit("/", 1)[-1]
        assert node in executables(), f"{name}: {key} is not a node of this package"
        params = set(body["ros__parameters"])
        unknown = params - declared_params(node)
        assert not unknown, f"{name}: {node} does not declare {unknown}"


@needs_interfaces
def test_issue_parameter_names_are_declared():
    want = {
        "encoder_node": {"xi", "period", "q_symbols", "lowres_kbps", "lowres_scale", "target_kbps"},
        "link_emulator": {"bandwidth_kbps", "latency_ms", "loss_rate", "reorder_rate"},
        "decoder_node": {"device", "lambda_c", "lambda_r", "lambda_t", "window", "num_steps"},
        "scene_source": {"fps", "width", "height", "seed"},
    }
    for node, names in want.items():
        assert names <= declared_params(node), f"{node} lacks {names - declared_params(node)}"
