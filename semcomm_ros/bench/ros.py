"""``semcomm bench ros``: the ROS chain as separate node processes over DDS: latency, rate, and a soak with faults.

Scene source -> segmentation -> encoder (rate controller holding ``--target-kbps``) -> link
emulator -> decoder + synthesizer, each its own process on loopback DDS; the benchmark listens
to ``link_stats``, ``link_stats_rx``, ``diagnostics`` and ``keyframe_request``. All processes
share this machine's cores, so latencies include that contention.

Plain run (``--duration`` s after ``--warmup``): latency camera -> decoded and -> synthesized,
decoder FPS, achieved kbps against the target.

``--soak [--minutes N]``: the link at ``--bandwidth-kbps`` (2) with 10 % loss, 5 % reordering and
200 ms latency, and on a timeline of the run's length T: garbage on the decoder's inputs (0.25 T),
kill -9 and restart of the decoder (0.35 T), a target change (0.5 T), kill -9 and restart of the
encoder (0.6 T), the link narrowed to half its rate (0.7 T) and restored (0.8 T). Prints frames
published, lost, the output gap distribution, keyframe requests, RSS of every node at start and
end, restart times, garbage refused, latency p50/p95, the achieved kbps of every ``--window-s``
window against the target in force, and how long latency took to fall under 1 s after the link
recovered.
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
from pathlib import Path

import numpy as np

NODES = ("scene_source", "segmentation", "encoder", "link", "decoder")


def add_arguments(parser) -> None:
    parser.add_argument("--soak", action="store_true", help="the soak run with faults (see above)")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length")
    parser.add_argument("--window-s", type=float, default=60.0, help="soak: window of the achieved-kbps figures")
    parser.add_argument("--duration", type=float, default=60.0, help="plain run: measured seconds (after warm-up)")
    parser.add_argument("--warmup", type=float, default=10.0, help="plain run: seconds ignored at the start")
    parser.add_argument("--size", type=int, default=128, help="camera frame size (square, multiple of 16)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--target-kbps", type=float, default=1.8, help="encoder budget (soak: first half)")
    parser.add_argument("--target2-kbps", type=float, default=1.2, help="soak: encoder budget from 0.5 T on")
    parser.add_argument("--bandwidth-kbps", type=float, default=2.0, help="link emulator cap (0 = none)")
    parser.add_argument("--latency-ms", type=float, default=None, help="added link latency (default: plain 0, soak 200)")
    parser.add_argument("--model", default="auto", help="auto (shipped model if present, else tiny), "
                        "default, tiny, or a model directory")
    parser.add_argument("--resolution", type=int, default=64, help="tiny model output size")
    parser.add_argument("--segmentation", default="labels", choices=["labels", "ultralytics"])
    parser.add_argument("--json", help="also write the figures to this JSON file")


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _pct(values, q):
    values = [v for v in values if np.isfinite(v)]  # NaN: a frame without a capture stamp
    return float(np.percentile(values, q)) if len(values) else float("nan")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def garbage(ns: str, size: int, n: int = 24, seed: int = 7) -> list[dict]:
    """Messages for ``semcomm_ros.ros.topic pub``: real packets with flipped bits, truncated,
    random bytes, fields that contradict the payload, absurd frame indices."""
    from semcomm_ros.codec import LowResEncoder, SemanticEncoder
    from semcomm_ros.scenes import tabletop_clip

    rng = np.random.default_rng(seed)
    sem, low = SemanticEncoder(), LowResEncoder(size, size, kbps=20.0)
    packets = [(sem.encode(lab), low.encode(rgb)) for rgb, lab in tabletop_clip(5, 6, size, size)]
    low.close()
    spec = []
    for k in range(n):
        sp, lp = packets[k % len(packets)]
        kind = k % 4
        if kind == 0:
            sp = bytearray(sp)
            sp[rng.integers(len(sp))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            sp = sp[: max(1, len(sp) // 2)]
        elif kind == 2:
            sp = bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
        lp = bytes(rng.integers(0, 256, 40, dtype=np.uint8)) if (kind % 2 or not lp) else lp[:-3]
        index = int(rng.choice([0, 1, 5, 2**31, 2**32 - 1, int(rng.integers(0, 1000))]))
        spec.append({"topic": f"{ns}/semantic", "type": "semcomm_ros/msg/SemanticFrame", "fields": {
            "frame_index": index, "frame_type": int(rng.integers(0, 4)), "xi": float(rng.choice([6.0, -1.0])),
            "iframe_period": int(rng.integers(0, 6)), "q_symbols": int(rng.choice([256, 0, 1])),
            "bitstream_version": 1, "profile": "paper", "width": int(rng.choice([size, 0, 64, 65535])),
            "height": size, "payload": {"__bytes__": bytes(sp).hex()}}})
        spec.append({"topic": f"{ns}/lowres", "type": "semcomm_ros/msg/LowResFrame", "fields": {
            "frame_index": index, "codec": str(rng.choice(["vp9", "", "nope"])), "width": 32, "height": 32,
            "keyframe": bool(rng.integers(2)), "payload": {"__bytes__": lp.hex()}}})
    return spec


class Chain:
    """The five nodes as child processes in their own namespace and DDS domain."""

    def __init__(self, args, model: str, latency_ms: float, loss: float, reorder: float):
        # not the random module's state: a test that seeded it would give every run the same
        # domain and namespace, and two runs at once would hear each other
        rng = random.SystemRandom()
        self.ns = f"/bench{uuid.uuid4().hex[:10]}"
        self.env = dict(os.environ, ROS_DOMAIN_ID=str(rng.randint(101, 232)),
                        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
        os.environ.update({k: self.env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
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


class Listener:
    """The benchmark's own rclpy node: what the chain reports, with arrival times."""

    def __init__(self, ns: str):
        import rclpy

        from sensor_msgs.msg import Image

        from semcomm_ros.msg import DecoderStats, KeyframeRequest, LinkStats, SemanticFrame
        from semcomm_ros.ros import qos

        rclpy.init()
        self.rclpy = rclpy
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
            (time.monotonic(), time.time_ns(), _ns(m.header.stamp))), qos.OPERATOR_OUTPUT)
        # what the encoder sent (frame index and type by capture stamp) and what the link let
        # through to the decoder: a gap between label maps is then a codec recovery or not
        self.sent: dict[int, tuple[int, int]] = {}
        self.arrived: set[int] = set()
        n.create_subscription(SemanticFrame, "tx/semantic", lambda m: self.sent.__setitem__(
            _ns(m.header.stamp), (int(m.frame_index), int(m.frame_type))), qos.LINK)
        n.create_subscription(SemanticFrame, "semantic", lambda m: self.arrived.add(_ns(m.header.stamp)), qos.LINK)

    def synthesizing(self) -> bool:
        """A frame synthesized: the chain is up (the decoder decodes while its model still loads)."""
        return any(m.synth_ms > 0 for _, m in self.diags[-20:])

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.rclpy.spin_once(self.node, timeout_sec=min(0.1, max(0.0, end - time.monotonic())))

    def wait(self, pred, timeout: float) -> float | None:
        """Seconds until ``pred()`` holds (spinning), None on timeout."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred():
                return time.monotonic() - t0
            self.rclpy.spin_once(self.node, timeout_sec=0.05)
        return None

    def set_params(self, target: str, **values) -> list:
        from semcomm_ros.ros.topic import set_parameters

        return set_parameters(self.node, target, values, timeout=20.0)

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def _auto_model(model: str) -> str:
    if model != "auto":
        return model
    from semcomm_ros.synth.model import DEFAULT_MODEL_DIR

    return "default" if (Path(DEFAULT_MODEL_DIR) / "synthesizer.json").is_file() else "tiny"


def run(args) -> int:
    return soak(args) if args.soak else plain(args)


def plain(args) -> int:
    model = _auto_model(args.model)
    chain = Chain(args, model, args.latency_ms or 0.0, 0.0, 0.0)
    for name in NODES:
        chain.start(name)
    ear = Listener(chain.ns)
    print(f"[bench ros] {args.size}x{args.size} at {args.fps} fps, target {args.target_kbps} kbps, link "
          f"{args.bandwidth_kbps or 'unlimited'} kbps, synthesizer {model}, segmentation {args.segmentation}; "
          f"logs in {chain.logdir}", flush=True)
    try:
        if ear.wait(lambda: ear.synthesizing() or bool(chain.dead()), 300) is None or chain.dead():
            raise RuntimeError(f"no synthesized frame within 300 s (exited: {chain.dead()}); see {chain.logdir}")
        ear.spin(args.warmup)
        t0 = time.monotonic()
        ear.spin(args.duration)
        rss = chain.rss()
    finally:
        problems = chain.stop()
        ear.close()
    s = [m for t, m in ear.stats if t >= t0]
    d = [(t, m) for t, m in ear.diags if t >= t0]
    if len(s) < 2 or len(d) < 2:
        print(f"[bench ros] too few messages in the measured window ({len(s)} stats, {len(d)} frames)")
        return 1
    frames = s[-1].frames - s[0].frames
    achieved = (s[-1].bits - s[0].bits) / (frames / args.fps) / 1000.0 if frames else float("nan")
    fig = {
        "frames_encoded": frames, "encoder_hz": frames / args.duration, "target_kbps": args.target_kbps,
        "achieved_kbps": achieved, "rss_mb": rss, "shutdown_problems": problems,
        "latency_decode_ms_p50_p95": [_pct([m.latency_decode_ms for _, m in d], q) for q in (50, 95)],
        "latency_total_ms_p50_p95": [_pct([m.latency_total_ms for _, m in d], q) for q in (50, 95)],
        "synth_ms_p50": _pct([m.synth_ms for _, m in d], 50),
        "decoder_fps": (len(d) - 1) / (d[-1][0] - d[0][0]),
        "decoder_device": d[-1][1].device, "synthesizer": model,
    }
    print(f"[bench ros] over {args.duration:.0f} s ({frames} frames): target {args.target_kbps:.2f} kbps, achieved "
          f"{achieved:.3f} kbps; latency camera -> decoded p50/p95 "
          f"{'/'.join(f'{v:.0f}' for v in fig['latency_decode_ms_p50_p95'])} ms, -> synthesized "
          f"{'/'.join(f'{v:.0f}' for v in fig['latency_total_ms_p50_p95'])} ms ({model}, {fig['decoder_device']}, "
          f"synthesizer {fig['synth_ms_p50']:.0f} ms/frame); decoder {fig['decoder_fps']:.2f} FPS")
    print(f"  robot side: {fig['encoder_hz']:.2f} frames/s encoded of a {args.fps:g} Hz camera; RSS MB {json.dumps(rss)}; "
          f"clean shutdown (SIGINT): {'yes' if not problems else problems}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0


def _windows(stats, t0, t_end, window_s, fps, encoder_starts=()):
    """Achieved kbps per window from the encoder's cumulative bit counter (a restarted encoder
    starts it again: only increases within one encoder's life count), with the budget in force
    (its mean over the window's frames);
    ``encoder_start`` marks a window in which an encoder started (its first I-frame and keyframe
    are sized for a whole window)."""
    out = []
    edges = np.arange(t0, t_end - 0.5 * window_s + 1e-9, window_s)
    for a in edges:
        b = min(a + window_s, t_end)
        bits, prev, targets = 0, None, []
        for t, m in stats:
            if t < a or t >= b:
                continue
            if prev is not None and m.bits >= prev:
                bits += m.bits - prev
            prev = m.bits
            targets.append(m.target_kbps)
        out.append({"from_s": round(a - t0, 1), "to_s": round(b - t0, 1), "kbps": round(bits / (b - a) / 1000.0, 3),
                     # the mean of the per-frame budget: it moves within a window under congestion
                     "budget_kbps": round(float(np.mean(targets)), 3) if targets else float("nan"),
                     # a cut within the window reaches the coded rate only over the next frames
                     "budget_max_kbps": round(float(np.max(targets)), 3) if targets else float("nan"),
                     "encoder_start": any(a <= u < b for u in encoder_starts)})
    return out


def _gaps(times, t0, t_end, restarts):
    """Frames, rate and the distribution of the gaps between outputs, restarts left out."""
    times = np.asarray(times)
    gaps, at = (np.diff(times), times[1:]) if len(times) > 1 else (np.array([]), np.array([]))
    keep = [(g, t) for g, t in zip(gaps, at) if not any(a <= t <= b + 0.5 for a, b in restarts)]
    edges = [0, 0.25, 0.5, 1.0, 2.0, 5.0, np.inf]
    return {"frames": int(len(times)), "fps": round(len(times) / (t_end - t0), 2),
            "gaps_s_histogram": {f"{a}-{b}": int(sum(a <= g < b for g, _ in keep)) for a, b in zip(edges[:-1], edges[1:])},
            "gap_max_s": round(float(max(g for g, _ in keep)), 2) if keep else None,
            "gaps_over_1s_at_s": [round(float(t - t0), 1) for g, t in keep if g >= 1.0]}


def explain_gaps(labels, sent, arrived, restarts, garbage=()) -> dict:
    """``bench.receiver.explain_gaps`` (the offline bench's rule) on the live chain: ``labels``
    [(arrival monotonic, arrival wall ns, capture stamp ns)] of the decoded label maps, ``sent``
    capture stamp -> (frame index, frame type) as the encoder published them (a restarted encoder
    numbers from 0 again: positions come from the stamps' order), ``arrived`` the stamps the link
    delivered; gaps ending in a restart (monotonic spans) are left out as ``_gaps`` leaves them,
    and an unexplained gap that overlaps a ``garbage`` span says so."""
    from semcomm_ros.bench.receiver import explain_gaps as explain
    from semcomm_ros.codec.packet import FRAME_I

    stamps = sorted(sent)
    position = {u: k for k, u in enumerate(stamps)}
    decoded = [(t, position.get(stamp), (wall - stamp) / 1e9) for t, wall, stamp in labels]
    why = explain(decoded, lambda p: sent[stamps[p]][1] == FRAME_I, lambda p: stamps[p] in arrived,
                  lambda p: stamps[p] / 1e9, skip=lambda ta, tb: any(a <= tb <= b + 0.5 for a, b in restarts))
    for u in why["unexplained"]:
        u["during_garbage"] = any(a <= u["at"] + u["gap_s"] and u["at"] <= b for a, b in garbage)
    return why


def soak(args) -> int:
    from semcomm_ros.ros.topic import publish_spec

    model = _auto_model(args.model)
    latency_ms = 200.0 if args.latency_ms is None else args.latency_ms
    T = 60.0 * args.minutes
    chain = Chain(args, model, latency_ms, 0.1, 0.05)
    for name in NODES:
        chain.start(name)
    ear = Listener(chain.ns)
    print(f"[bench ros soak] {args.minutes:g} min, {args.size}x{args.size} at {args.fps:g} fps; link "
          f"{args.bandwidth_kbps:g} kbps, 10 % loss, 5 % reordering, {latency_ms:g} ms; target "
          f"{args.target_kbps:g} -> {args.target2_kbps:g} kbps at 0.5 T; synthesizer {model}; logs in "
          f"{chain.logdir}", flush=True)
    fig: dict = {"minutes": args.minutes, "size": args.size, "synthesizer": model, "events": {}}
    ev = fig["events"]
    try:
        if ear.wait(lambda: ear.synthesizing() or bool(chain.dead()), 300) is None or chain.dead():
            raise RuntimeError(f"no synthesized frame within 300 s (exited: {chain.dead()}); see {chain.logdir}")
        t0 = time.monotonic()
        ear.spin(3.0)
        fig["rss_start_mb"] = chain.rss()

        def at(frac):
            ear.spin(max(0.0, t0 + frac * T - time.monotonic()))
            return time.monotonic()

        at(0.25)
        bad0 = ear.diags[-1][1].bad_packets
        spec = garbage(chain.ns, args.size)
        t_garbage = time.monotonic()
        pub_s = publish_spec(ear.node, spec, rate=20.0, duration=3.0, qos_name="link")
        garbage_span = (t_garbage, time.monotonic())
        ear.spin(2.0)
        ev["garbage"] = {"messages": len(spec) * pub_s, "distinct": len(spec), "refused_as_bad": int(ear.diags[-1][1].bad_packets - bad0),
                         "decoder_alive": "decoder" not in chain.dead()}

        t_kill = at(0.35)
        chain.kill9("decoder")
        n, n_labels = len(ear.diags), len(ear.labels)
        chain.start("decoder")
        deadline = max(10.0, t0 + 0.5 * T - time.monotonic())
        up = ear.wait(lambda: len(ear.diags) > n, deadline)
        ev["decoder_restart_s"] = None if up is None else round(time.monotonic() - t_kill, 2)
        # the decoder decodes while its model loads: label maps come back first, then synthesis
        labels_back = [t for t, _, _ in ear.labels[n_labels:]]
        if not labels_back and ear.wait(lambda: len(ear.labels) > n_labels, deadline) is not None:
            labels_back = [ear.labels[n_labels][0]]
        ev["decoder_restart_labels_s"] = round(labels_back[0] - t_kill, 2) if labels_back else None
        synth = ear.wait(lambda: any(m.synth_ms > 0 for _, m in ear.diags[n:]), deadline)
        ev["decoder_restart_synth_s"] = (None if synth is None else
                                         round(next(t for t, m in ear.diags[n:] if m.synth_ms > 0) - t_kill, 2))

        t_change = at(0.5)
        ev["target_change"] = {"at_s": round(t_change - t0, 1), "results": ear.set_params(
            f"{chain.ns}/encoder_node", target_kbps=args.target2_kbps)}

        t_kill = at(0.6)
        last = ear.diags[-1][1].frame_index
        chain.kill9("encoder")
        chain.start("encoder", target_kbps=args.target2_kbps)
        n = len(ear.diags)
        # frames again: the decoder follows the restarted stream (index from 0) and decodes
        up = ear.wait(lambda: any(m.frame_index + 50 < last for _, m in ear.diags[n:]),
                      max(10.0, t0 + 0.7 * T - time.monotonic()))
        ev["encoder_restart_s"] = None if up is None else round(time.monotonic() - t_kill, 2)
        if up is None:  # alive but silent: its threads' stacks into its log (faulthandler, SIGUSR1)
            chain.signal("encoder", signal.SIGUSR1)
            ev["encoder_stuck"] = f"no frames after the restart; stacks in {chain.logdir}/encoder.{chain.starts}.log"

        t_narrow = at(0.7)
        ear.set_params(f"{chain.ns}/link_emulator", bandwidth_kbps=args.bandwidth_kbps / 2)
        t_back = at(0.8)
        ear.set_params(f"{chain.ns}/link_emulator", bandwidth_kbps=args.bandwidth_kbps)
        ev["link_narrowed"] = {"from_s": round(t_narrow - t0, 1), "to_s": round(t_back - t0, 1),
                               "kbps": args.bandwidth_kbps / 2}
        at(1.0)
        t_end = time.monotonic()
        fig["rss_end_mb"] = chain.rss()
        fig["dead_before_stop"] = chain.dead()
    finally:
        fig["shutdown_problems"] = chain.stop()
        ear.close()

    d = [(t, m) for t, m in ear.diags if t0 <= t <= t_end]
    s = [(t, m) for t, m in ear.stats if t0 <= t <= t_end]
    back = max(ev[k] or 0 for k in ("decoder_restart_s", "decoder_restart_labels_s", "decoder_restart_synth_s"))
    restarts = [(t0 + 0.35 * T, t0 + 0.35 * T + back + 1),
                (t0 + 0.6 * T, t0 + 0.6 * T + (ev["encoder_restart_s"] or 0) + 1)]
    labels = [x for x in ear.labels if t0 <= x[0] <= t_end]
    fig["output"] = {"decoded_labels": _gaps([x[0] for x in labels], t0, t_end, restarts),
                     "synthesized": _gaps([t for t, _ in d], t0, t_end, restarts)}
    why = explain_gaps(labels, ear.sent, ear.arrived, restarts, [garbage_span])
    rec = why["recoveries"]
    fig["output"]["decoded_labels"]["over_1s_explained"] = {
        "codec_recoveries": len(rec), "unexplained": len(why["unexplained"]),
        "unexplained_at_s": [dict(u, at=round(u["at"] - t0, 1)) for u in why["unexplained"]],
        "recovery_median_s": {k: round(float(np.median([r[k] for r in rec])), 2) if rec else None
                              for k in ("gap_s", "to_iframe_s", "iframe_to_received_s")}}
    lat_d = [m.latency_decode_ms for t, m in d if not (t_narrow <= t <= t_back + 10)]
    lat_s = [m.latency_total_ms for t, m in d if not (t_narrow <= t <= t_back + 10)]
    fig["latency_ms"] = {"camera_to_decoded_p50_p95": [round(_pct(lat_d, q), 1) for q in (50, 95)],
                         "camera_to_synthesized_p50_p95": [round(_pct(lat_s, q), 1) for q in (50, 95)],
                         "synth_ms_p50": round(_pct([m.synth_ms for _, m in d], 50), 1)}
    narrow = [m.latency_decode_ms for t, m in d if t_narrow <= t <= t_back and np.isfinite(m.latency_decode_ms)]
    after = [(t, m.latency_decode_ms) for t, m in d if t > t_back and np.isfinite(m.latency_decode_ms)]
    recovered = next((t - t_back for i, (t, v) in enumerate(after) if all(w < 1000 for _, w in after[i:i + 10])), None)
    fig["congestion"] = {"latency_ms_max_while_narrow": round(max(narrow), 1) if narrow else None,
                         "latency_under_1s_after_recovery_s": None if recovered is None else round(recovered, 2)}
    lives = [m for _, m in d]
    fig["decoder"] = {k: int(sum(max(getattr(a, k) - getattr(b, k), 0) for a, b in zip(lives[1:], lives[:-1])
                                 if getattr(a, k) >= getattr(b, k)))
                      for k in ("lost", "stale", "reordered", "bad_packets", "concealed", "keyframe_requests",
                                "warnings", "warnings_suppressed")}
    enc = [m for _, m in s]
    published = int(sum(max(a.frames - b.frames, 0) for a, b in zip(enc[1:], enc[:-1])))
    fig["encoder"] = {"frames_published": published, "hz": round(published / (t_end - t0), 2),
                      "keyframe_requests_received": int(sum(max(a.keyframe_requests - b.keyframe_requests, 0)
                                                            for a, b in zip(enc[1:], enc[:-1])))}
    rx = [m for t, m in ear.rx if t0 <= t <= t_end]
    fig["link"] = {"dropped": int(rx[-1].dropped) if rx else None, "delivered": int(rx[-1].frames) if rx else None}
    fig["windows"] = _windows(s, t0, t_end, args.window_s, args.fps, [t0 + 0.6 * T])
    _print_soak(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1, default=float))
    return 0


def _print_soak(fig) -> None:
    ev, o, lat = fig["events"], fig["output"], fig["latency_ms"]
    print(f"[bench ros soak] {fig['minutes']:g} min:")
    print(f"  encoder: {fig['encoder']['frames_published']} frames published ({fig['encoder']['hz']} /s, "
          f"restart included), "
          f"{fig['encoder']['keyframe_requests_received']} keyframe requests received; link dropped "
          f"{fig['link']['dropped']}, delivered {fig['link']['delivered']} packets")
    print(f"  decoder: {json.dumps(fig['decoder'])}")
    for name, what in (("decoded_labels", "decoded label maps (link + codecs)"),
                       ("synthesized", "synthesized frames (diagnostics)")):
        g = o[name]
        print(f"  {what}: {g['frames']} ({g['fps']} /s); gaps (s) {json.dumps(g['gaps_s_histogram'])}, longest "
              f"{g['gap_max_s']} s (restarts excluded); gaps >= 1 s at {g['gaps_over_1s_at_s']} s")
    x = o["decoded_labels"]["over_1s_explained"]
    m = x["recovery_median_s"]
    print(f"  label-map gaps >= 1 s: {x['codec_recoveries']} codec recoveries (a semantic frame lost on the link, the "
          f"gap ends on an I-frame; median {m['gap_s']} s = first loss -> I-frame captured {m['to_iframe_s']} s + "
          f"I-frame captured -> received {m['iframe_to_received_s']} s), {x['unexplained']} unexplained"
          + (f" ({sum(u.get('during_garbage', False) for u in x['unexplained_at_s'])} during the garbage): "
             f"{x['unexplained_at_s'][:8]}" if x["unexplained"] else ""))
    print(f"  latency camera -> decoded p50/p95 {lat['camera_to_decoded_p50_p95'][0]:.0f}/"
          f"{lat['camera_to_decoded_p50_p95'][1]:.0f} ms, -> synthesized {lat['camera_to_synthesized_p50_p95'][0]:.0f}/"
          f"{lat['camera_to_synthesized_p50_p95'][1]:.0f} ms (synthesizer {lat['synth_ms_p50']:.0f} ms/frame, "
          f"{fig['synthesizer']})")
    g = ev.get("garbage", {})
    print(f"  garbage: {g.get('messages')} messages ({g.get('distinct')} distinct) on the decoder's inputs, "
          f"{g.get('refused_as_bad')} refused as bad "
          f"packets, decoder alive: {g.get('decoder_alive')}")
    if ev.get("encoder_stuck"):
        print(f"  encoder restart: {ev['encoder_stuck']}")
    print(f"  restarts (kill -9 -> frames again): decoder {ev.get('decoder_restart_s')} s (label maps "
          f"{ev.get('decoder_restart_labels_s')} s, synthesized {ev.get('decoder_restart_synth_s')} s), encoder "
          f"{ev.get('encoder_restart_s')} s")
    c = fig["congestion"]
    print(f"  link at half rate {ev['link_narrowed']['from_s']}-{ev['link_narrowed']['to_s']} s: latency max "
          f"{c['latency_ms_max_while_narrow']} ms; under 1 s again {c['latency_under_1s_after_recovery_s']} s after "
          f"the link recovered")
    print("  achieved kbps per window (budget in force; target change at 0.5 T):")
    for w in fig["windows"]:
        print(f"    {w['from_s']:6.0f}-{w['to_s']:<6.0f} s  {w['kbps']:.3f} kbps  (budget {w['budget_kbps']:.2f})"
              + ("  encoder restarted in it" if w["encoder_start"] else ""))
    print(f"  RSS MB start: {json.dumps(fig['rss_start_mb'])}")
    print(f"  RSS MB end:   {json.dumps(fig['rss_end_mb'])}")
    print(f"  clean shutdown (SIGINT): {'yes' if not fig['shutdown_problems'] else fig['shutdown_problems']}")
