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

Modules: ``_ros_harness`` (the node processes and the listener), ``_ros_soak`` (the fault timeline
and the garbage), ``_ros_figures`` (figures and printed lines); the leading underscore keeps them
out of the ``semcomm bench`` listing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from semcomm_ros.bench._ros_figures import plain_figures, print_plain
from semcomm_ros.bench._ros_harness import NODES, Chain, Listener, auto_model
from semcomm_ros.bench._ros_soak import garbage, soak

__all__ = ["NODES", "add_arguments", "garbage", "plain", "run", "soak"]


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
    parser.add_argument("--latency-ms", type=float, default=None,
                        help="added link latency (default: plain 0, soak 200)")
    parser.add_argument("--model", default="auto", help="auto (shipped model if present, else tiny), "
                        "default, tiny, or a model directory")
    parser.add_argument("--resolution", type=int, default=64, help="tiny model output size")
    parser.add_argument("--segmentation", default="labels", choices=["labels", "ultralytics"])
    parser.add_argument("--json", help="also write the figures to this JSON file")


def run(args) -> int:
    return soak(args) if args.soak else plain(args)


def plain(args) -> int:
    model = auto_model(args.model)
    chain = Chain(args, model, args.latency_ms or 0.0, 0.0, 0.0)
    for name in NODES:
        chain.start(name)
    ear = Listener(chain.ns, chain.domain_id)
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
    fig = plain_figures(s, d, args, model, rss, problems)
    print_plain(fig, args)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0
