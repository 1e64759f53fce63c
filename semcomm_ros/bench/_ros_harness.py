"""``semcomm bench ros``'s harness: the five nodes as child processes, and the benchmark's own rclpy
node that listens to what they report.

Every run gets its own DDS domain and topic namespace, so runs on one machine at once never hear
each other. Both live in the children's environment (``Chain.env``) and in the listener's context;
this process's ``os.environ`` stays as it was.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import rclpy
from sensor_msgs.msg import Image

from semcomm_ros.codec.errors import BitstreamError
from semcomm_ros.codec.packet import parse_header, unbundle
from semcomm_ros.msg import DecoderStats, KeyframeRequest, LinkStats, SemanticFrame
from semcomm_ros.ros import qos
from semcomm_ros.ros.topic import set_parameters

NODES = ("scene_source", "segmentation", "encoder", "link", "decoder")
#: discovery on this machine only, for the nodes and the listener alike
DISCOVERY_RANGE = "LOCALHOST"


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def auto_model(model: str) -> str:
    """``--model auto``: the shipped model when it is there, else the tiny one."""
    if model != "auto":
        return model
    # deferred: synth.model imports torch, which this process needs for nothing else
    from semcomm_ros.synth.model import DEFAULT_MODEL_DIR

    return "default" if (Path(DEFAULT_MODEL_DIR) / "synthesizer.json").is_file() else "tiny"


class Chain:
    """The five nodes as child processes in their own namespace and DDS domain."""

    def __init__(self, args, model: str, latency_ms: float, loss: float, reorder: float):
        # not the random module's state: a test that seeded it would give every run the same
        # domain and namespace, and two runs at once would hear each other
        rng = random.SystemRandom()
        self.ns = f"/bench{uuid.uuid4().hex[:10]}"
        self.domain_id = rng.randint(101, 232)
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(self.domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE=DISCOVERY_RANGE,
                        PYTHONUNBUFFERED="1")
        self.logdir = Path(tempfile.mkdtemp(prefix="semcomm-bench-ros-"))
        size = {"width": args.size, "height": args.size}
        self.spec = {
            "scene_source": ("scene_source", {**size, "fps": args.fps, "seed": 0, "clip_frames": 1000}, None),
            "segmentation": ("segmentation_node", {"backend": args.segmentation}, None),
            "encoder": ("encoder_node", {"fps": args.fps, "target_kbps": args.target_kbps, "window_s": 5.0},
                        {"semantic": "tx/semantic", "lowres": "tx/lowres"}),
            "link": ("link_emulator", {"bandwidth_kbps": args.bandwidth_kbps, "latency_ms": latency_ms,
                                       "loss_rate": loss, "reorder_rate": reorder, "seed": 1, "window_s": 10.0},
                     None),
            "decoder": ("decoder_node", {"model": model, "resolution": args.resolution}, None),
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts = 0

    def start(self, name: str, **override) -> subprocess.Popen:
        module, params, remap = self.spec[name]
        params = {**params, **override}
        self.spec[name] = (module, params, remap)
        cmd = [sys.executable, "-m", f"semcomm_ros.nodes.{module}", "--ros-args", "-r", f"__ns:={self.ns}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={json.dumps(v) if isinstance(v, bool) else v}"]
        for k, v in (remap or {}).items():
            cmd += ["-r", f"{k}:={v}"]
        self.starts += 1
        log = open(self.logdir / f"{name}.{self.starts}.log", "w")
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = p
        return p

    def kill9(self, name: str) -> None:
        p = self.procs[name]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)

    def signal(self, name: str, sig: int) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.kill(p.pid, sig)

    def rss(self) -> dict[str, float]:
        return {name: round(rss_mb(p.pid), 1) for name, p in self.procs.items()}

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop(self) -> dict[str, str]:
        """SIGINT every node; returns per node what a clean shutdown must not leave in its log."""
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        bad = {}
        for name in self.procs:
            text = (self.logdir / f"{name}.{self._last_log(name)}.log").read_text(errors="replace")
            tail = text[max(0, len(text) - 4000):]
            for marker in ("Traceback", "[ERROR]"):
                if marker in tail:
                    bad[name] = tail[tail.index(marker):][:400]
        return bad

    def _last_log(self, name: str) -> int:
        return max(int(p.name.split(".")[1]) for p in self.logdir.glob(f"{name}.*.log"))


@contextmanager
def _discovery_range(value: str):
    """rcl reads the discovery range from the environment when a context starts, and rclpy takes
    no argument for it: set for that call only, then the environment is restored."""
    key = "ROS_AUTOMATIC_DISCOVERY_RANGE"
    was = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if was is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = was


def resynchronises(payload) -> bool:
    """Whether a sent semantic packet brings a decoder that lost its chain back: an I-frame, or a
    P-frame predicted from an older frame (the encoder's answer to a refresh request)."""
    try:
        hdr = parse_header(unbundle(bytes(payload)).primary)
    except BitstreamError:
        return False
    return hdr.is_iframe or hdr.reference > 1


class Listener:
    """The benchmark's own rclpy node in the chain's domain: what the chain reports, with arrival times."""

    def __init__(self, ns: str, domain_id: int):
        with _discovery_range(DISCOVERY_RANGE):
            rclpy.init(domain_id=domain_id)
        self.node = rclpy.create_node("semcomm_bench_ros", namespace=ns)
        self.stats, self.diags, self.rx, self.requests, self.labels = [], [], [], [], []
        n = self.node
        n.create_subscription(LinkStats, "link_stats", lambda m: self.stats.append((time.monotonic(), m)), qos.STATS)
        n.create_subscription(DecoderStats, "diagnostics", lambda m: self.diags.append((time.monotonic(), m)),
                              qos.STATS)
        n.create_subscription(LinkStats, "link_stats_rx", lambda m: self.rx.append((time.monotonic(), m)), qos.STATS)
        n.create_subscription(KeyframeRequest, "keyframe_request",
                              lambda m: self.requests.append((time.monotonic(), m)), qos.FEEDBACK)
        # every decoded label map (camera rate) with its capture stamp: the receiver's output
        # before synthesis, whose gaps are the link's and the codecs' recovery
        n.create_subscription(Image, "decoded_labels", lambda m: self.labels.append(
            (time.monotonic(), time.time_ns(), stamp_ns(m.header.stamp))), qos.OPERATOR_OUTPUT)
        # what the encoder sent (frame index, type, and whether it resynchronises: an I-frame or a
        # recovery P-frame, by capture stamp) and what the link let through to the decoder: a gap
        # between label maps is then a codec recovery or not
        self.sent: dict[int, tuple[int, int, bool]] = {}
        self.arrived: set[int] = set()
        n.create_subscription(SemanticFrame, "tx/semantic", lambda m: self.sent.__setitem__(
            stamp_ns(m.header.stamp), (int(m.frame_index), int(m.frame_type), resynchronises(m.payload))),
            qos.LINK)
        n.create_subscription(SemanticFrame, "semantic", lambda m: self.arrived.add(stamp_ns(m.header.stamp)),
                              qos.LINK)

    def synthesizing(self) -> bool:
        """A frame synthesized: the chain is up (the decoder decodes while its model still loads)."""
        return any(m.synth_ms > 0 for _, m in self.diags[-20:])

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

    def wait(self, pred, timeout: float) -> float | None:
        """Seconds until ``pred()`` holds (spinning), None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return None

    def set_params(self, target: str, **values) -> list:
        return set_parameters(self.node, target, values, timeout=20.0)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown()
