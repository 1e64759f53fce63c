"""The parameter tool (``python -m semcomm_ros.ros.topic param``, the stand-in for ``ros2 param``)
against a real link_emulator process: an integer is taken for a double, a wrong type is refused
naming both types, ``--get`` and ``--list`` read back what the node holds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rosutil import ROOT, have_interfaces, processes, ros_env, unique_ns, wait_for

pytestmark = pytest.mark.skipif(not have_interfaces(),
                                reason="msg/ interfaces not built: run scripts/build_interfaces.sh")


def _param(P, *args):
    p = subprocess.run([sys.executable, "-m", "semcomm_ros.ros.topic", "param", *args], env=P.env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_param_set_get_list(tmp_path):
    ns = unique_ns()
    node = f"{ns}/link_emulator"
    with processes(tmp_path, ros_env()) as P:
        P.node("link", "link_emulator", ns)
        wait_for(lambda: "link:" in P.log("link"), 60, "the link emulator", P)
        rc, out, err = _param(P, node, "bandwidth_kbps:=3", "loss_rate:=0.25")
        assert rc == 0, (out, err)
        assert all(r["successful"] for r in json.loads(out))
        rc, out, err = _param(P, node, "--get", "bandwidth_kbps", "loss_rate", "seed")
        assert rc == 0 and json.loads(out) == {"bandwidth_kbps": 3.0, "loss_rate": 0.25, "seed": 0}, (out, err)

        rc, out, _ = _param(P, node, "latency_ms:=fast")
        assert rc == 1 and "latency_ms has type double; got string 'fast'" in out, out
        rc, out, _ = _param(P, node, "seed:=1.5")
        assert rc == 1 and "seed has type integer; got double 1.5" in out, out
        rc, out, _ = _param(P, node, "loss_rate:=2")
        assert rc == 1 and "out of range" in out, out
        rc, out, _ = _param(P, node, "no_such:=1")
        assert rc == 1 and "has no parameter 'no_such'" in out, out

        rc, out, err = _param(P, node, "--list")
        assert rc == 0, err
        listed = {d["name"]: d for d in map(json.loads, out.splitlines())}
        assert listed["bandwidth_kbps"]["type"] == "double" and listed["bandwidth_kbps"]["range"]
        assert listed["seed"]["read_only"] and listed["seed"]["type"] == "integer"
        assert "max_delay_s" in listed
        P.check_alive()
