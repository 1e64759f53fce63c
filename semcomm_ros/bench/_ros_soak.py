"""``semcomm bench ros --soak``: the chain under faults on a timeline of the run's length T (see
``bench/ros.py``), and the garbage it puts on the decoder's inputs."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np

from semcomm_ros.bench._ros_figures import print_soak, soak_figures
from semcomm_ros.bench._ros_harness import NODES, Chain, Listener, auto_model
from semcomm_ros.codec import LowResEncoder, SemanticEncoder
from semcomm_ros.ros.topic import publish_spec
from semcomm_ros.scenes import tabletop_clip


def garbage(ns: str, size: int, n: int = 24, seed: int = 7) -> list[dict]:
    """Messages for ``semcomm_ros.ros.topic pub``: real packets with flipped bits, truncated,
    random bytes, fields that contradict the payload, absurd frame indices."""
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


def soak(args) -> int:
    model = auto_model(args.model)
    latency_ms = 200.0 if args.latency_ms is None else args.latency_ms
    T = 60.0 * args.minutes
    chain = Chain(args, model, latency_ms, 0.1, 0.05)
    for name in NODES:
        chain.start(name)
    ear = Listener(chain.ns, chain.domain_id)
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
        ev["garbage"] = {"messages": len(spec) * pub_s, "distinct": len(spec),
                         "refused_as_bad": int(ear.diags[-1][1].bad_packets - bad0),
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

    back = max(ev[k] or 0 for k in ("decoder_restart_s", "decoder_restart_labels_s", "decoder_restart_synth_s"))
    restarts = [(t0 + 0.35 * T, t0 + 0.35 * T + back + 1),
                (t0 + 0.6 * T, t0 + 0.6 * T + (ev["encoder_restart_s"] or 0) + 1)]
    fig.update(soak_figures(ear, t0, t_end, restarts, garbage_span, (t_narrow, t_back), args.window_s, args.fps,
                            [t0 + 0.6 * T]))
    print_soak(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1, default=float))
    return 0
