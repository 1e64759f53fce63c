"""``semcomm bench ros``: the whole ROS pipeline as separate processes over DDS on loopback, for
``--duration`` seconds: scene source -> segmentation -> encoder (rate controller holding
``--target-kbps``) -> link emulator (``--bandwidth-kbps``) -> decoder + synthesizer.

Prints: end-to-end latency robot -> operator excluding synthesis (capture stamp -> decoded label
map published) and including it (-> synthesized frame published), decoder FPS (synthesized
frames per second), synthesizer time per frame, and the achieved kbps against the target (whole
run, and the spread of the encoder's sliding window), plus what crossed the emulated link.
All processes share this machine's cores, so latencies include that contention.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (after warm-up)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds ignored at the start")
    parser.add_argument("--size", type=int, default=128, help="camera frame size (square, multiple of 16)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--target-kbps", type=float, default=2.0)
    parser.add_argument("--bandwidth-kbps", type=float, default=2.5, help="link emulator cap (0 = none)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added link latency")
    parser.add_argument("--model", default="auto", help="auto (shipped model if present, else tiny), "
                        "default, tiny, or a model directory")
    parser.add_argument("--resolution", type=int, default=64, help="tiny model output size")
    parser.add_argument("--segmentation", default="labels", choices=["labels", "ultralytics"])
    parser.add_argument("--json", help="also write the figures to this JSON file")


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * (len(values) - 1) + 0.5))] if values else float("nan")


def run(args) -> int:
    import rclpy

    from semcomm_ros.msg import DecoderStats, LinkStats
    from semcomm_ros.ros import qos

    model = args.model
    if model == "auto":
        from semcomm_ros.synth.model import DEFAULT_MODEL_DIR

        model = "default" if (Path(DEFAULT_MODEL_DIR) / "synthesizer.json").is_file() else "tiny"
    ns = f"/bench{random.randrange(1 << 30):x}"
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(101, 232)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    logdir = Path(tempfile.mkdtemp(prefix="semcomm-bench-ros-"))

    def node(name, module, params, remap=None):
        cmd = [sys.executable, "-m", f"semcomm_ros.nodes.{module}", "--ros-args", "-r", f"__ns:={ns}"]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={json.dumps(v) if isinstance(v, bool) else v}"]
        for k, v in (remap or {}).items():
            cmd += ["-r", f"{k}:={v}"]
        return subprocess.Popen(cmd, env=env, stdout=open(logdir / f"{name}.log", "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)

    size = {"width": args.size, "height": args.size}
    procs = [
        node("scene_source", "scene_source", {**size, "fps": args.fps, "seed": 0, "clip_frames": 1000}),
        node("segmentation", "segmentation_node", {"backend": args.segmentation}),
        node("encoder", "encoder_node", {"fps": args.fps, "target_kbps": args.target_kbps, "window_s": 5.0},
             {"semantic": "tx/semantic", "lowres": "tx/lowres"}),
        node("link", "link_emulator", {"bandwidth_kbps": args.bandwidth_kbps, "latency_ms": args.latency_ms,
                                       "window_s": 600.0}),
        node("decoder", "decoder_node", {"model": model, "resolution": args.resolution}),
    ]
    stats, diags, rx = [], [], []
    rclpy.init()
    n = rclpy.create_node("semcomm_bench_ros", namespace=ns)
    n.create_subscription(LinkStats, "link_stats", lambda m: stats.append((time.monotonic(), m)), qos.STATS)
    n.create_subscription(DecoderStats, "diagnostics", lambda m: diags.append((time.monotonic(), m)), qos.STATS)
    n.create_subscription(LinkStats, "link_stats_rx", lambda m: rx.append((time.monotonic(), m)), qos.STATS)
    print(f"[bench ros] {args.size}x{args.size} at {args.fps} fps, target {args.target_kbps} kbps, link "
          f"{args.bandwidth_kbps or 'unlimited'} kbps, synthesizer {model}, segmentation {args.segmentation}; "
          f"logs in {logdir}", flush=True)
    try:
        t_start = time.monotonic()
        while not diags and time.monotonic() - t_start < 300:
            rclpy.spin_once(n, timeout_sec=0.1)
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a node exited during start-up; see {logdir}")
        if not diags:
            raise RuntimeError(f"no decoded frame within 300 s; see {logdir}")
        t0 = time.monotonic() + args.warmup
        while time.monotonic() < t0 + args.duration:
            rclpy.spin_once(n, timeout_sec=0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        n.destroy_node()
        rclpy.try_shutdown()

    s = [m for t, m in stats if t >= t0]
    d = [m for t, m in diags if t >= t0]
    if len(s) < 2 or not d:
        print(f"[bench ros] too few messages in the measured window ({len(s)} stats, {len(d)} frames)")
        return 1
    frames = s[-1].frames - s[0].frames
    achieved = (s[-1].bits - s[0].bits) / (frames / args.fps) / 1000.0 if frames else float("nan")
    window = [m.total_kbps for m in s]
    synth_frames = d[-1].frames - d[0].frames
    span = [t for t, _ in diags if t >= t0]
    fig = {
        "frames_encoded": frames,
        "target_kbps": args.target_kbps,
        "achieved_kbps": achieved,
        "achieved_semantic_kbps": statistics.mean(m.semantic_kbps for m in s),
        "achieved_lowres_kbps": statistics.mean(m.lowres_kbps for m in s),
        "window5s_kbps_p10_p50_p90": [_pct(window, 0.1), _pct(window, 0.5), _pct(window, 0.9)],
        "xi_p10_p50_p90": [_pct([m.xi for m in s], q) for q in (0.1, 0.5, 0.9)],
        "latency_excl_synthesis_ms_p50_p90": [_pct([m.latency_decode_ms for m in d], q) for q in (0.5, 0.9)],
        "latency_incl_synthesis_ms_p50_p90": [_pct([m.latency_total_ms for m in d], q) for q in (0.5, 0.9)],
        "synth_ms_p50": _pct([m.synth_ms for m in d], 0.5),
        "decoder_fps": synth_frames / (span[-1] - span[0]) if len(span) > 1 and span[-1] > span[0] else 0.0,
        "decoder_device": d[-1].device,
        "synthesizer": model,
        "link_delivered_kbps": rx[-1][1].total_kbps if rx else float("nan"),
        "link_dropped": rx[-1][1].dropped if rx else -1,
        "decoder_lost": d[-1].lost, "decoder_bad_packets": d[-1].bad_packets,
    }
    print(f"[bench ros] over {args.duration:.0f} s ({frames} frames):")
    print(f"  rate controller: target {args.target_kbps:.2f} kbps, achieved {achieved:.3f} kbps "
          f"(semantic {fig['achieved_semantic_kbps']:.3f} + low-res {fig['achieved_lowres_kbps']:.3f}); "
          f"5 s window p10/p50/p90 = {'/'.join(f'{v:.2f}' for v in fig['window5s_kbps_p10_p50_p90'])} kbps; "
          f"xi p10/p50/p90 = {'/'.join(f'{v:.1f}' for v in fig['xi_p10_p50_p90'])}")
    print(f"  latency robot -> operator, excluding synthesis: p50 {fig['latency_excl_synthesis_ms_p50_p90'][0]:.1f} ms, "
          f"p90 {fig['latency_excl_synthesis_ms_p50_p90'][1]:.1f} ms")
    print(f"  latency including synthesis ({model}, {fig['decoder_device']}): p50 "
          f"{fig['latency_incl_synthesis_ms_p50_p90'][0]:.1f} ms, p90 {fig['latency_incl_synthesis_ms_p50_p90'][1]:.1f} ms; "
          f"synthesizer {fig['synth_ms_p50']:.1f} ms/frame")
    print(f"  decoder FPS (synthesized frames/s): {fig['decoder_fps']:.2f}")
    print(f"  link: delivered {fig['link_delivered_kbps']:.3f} kbps, dropped {fig['link_dropped']}; decoder lost "
          f"{fig['decoder_lost']}, bad packets {fig['decoder_bad_packets']}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0
