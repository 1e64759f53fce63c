"""``semcomm bench receiver``: the operator's Receiver on a lossy, reordering link, offline: output gaps, held label maps, losses, with and without its jitter buffer.

Robot side (ground-truth label maps of generated tabletop clips, the semantic and low-res
encoders) -> ``SimulatedLink`` (default: issue 16's 2 kbps, 10 % loss, 5 % reordering, 200 ms) ->
``Receiver`` polled every 10 ms of simulated time, as the decoder node polls it. Keyframe requests
reach the encoders at once (the feedback topic, simulated). Prints, per ``--jitter`` value: frames
handed out, the distribution of the time between consecutive frames (an output gap), runs of
frames that hold the last label map (concealment) and the counters. No synthesis: the figures are
the receive side's.
"""

from __future__ import annotations

import collections

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=600, help="frames (10 fps; default: %(default)s = 60 s)")
    p.add_argument("--size", type=int, default=128, help="camera size, square (default: %(default)s)")
    p.add_argument("--link-kbps", type=float, default=2.0)
    p.add_argument("--lowres-kbps", type=float, default=0.8)
    p.add_argument("--loss", type=float, default=0.1)
    p.add_argument("--reorder", type=float, default=0.05)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--jitter", type=int, nargs="+", default=[0, 3],
                   help="jitter_frames values to compare (0 = no jitter buffer; default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)


def _clip(frames: int, size: int):
    from semcomm_ros.scenes import tabletop_clip

    clip, seed = [], 0
    while len(clip) < frames:
        clip += list(tabletop_clip(4000 + seed, 100, size, size))
        seed += 1
    return clip[:frames]


def measure(clip, args, jitter: int, fps: float = 10.0) -> dict:
    from semcomm_ros.codec import LowResEncoder, SemanticEncoder
    from semcomm_ros.link import LinkParams, SimulatedLink
    from semcomm_ros.receiver import Receiver, ReceiverConfig

    size = clip[0][1].shape[0]
    sem, low = SemanticEncoder(), LowResEncoder(size, size, fps=int(fps), scale=4, kbps=args.lowres_kbps)
    link = SimulatedLink(LinkParams(bandwidth_kbps=args.link_kbps, latency_ms=args.latency_ms,
                                    loss_rate=args.loss, reorder_rate=args.reorder), seed=args.seed)
    rx = Receiver(ReceiverConfig(jitter_frames=jitter))
    out = []

    def deliver(t):
        for stream, k, packet in link.receive(t):
            if stream == "lowres" and not packet:
                continue  # as on the wire: the encoder sends nothing for a skipped frame
            (rx.push_semantic if stream == "semantic" else rx.push_lowres)(k, packet, t)
        out.extend(rx.poll(t))
        for r in rx.take_requests():
            if r.semantic:
                sem.force_iframe()
            if r.lowres:
                low.force_keyframe()

    for k, (rgb, labels) in enumerate(clip):
        t = k / fps
        sp, lp = sem.encode(labels), low.encode(rgb)
        link.send(t, ("semantic", k, sp), len(sp))
        link.send(t, ("lowres", k, lp), len(lp))
        for sub in range(10):
            deliver(t + sub / (10 * fps))
    t = len(clip) / fps
    while link.next_arrival() is not None:
        t = max(t, link.next_arrival())
        deliver(t)
    gaps = np.diff([f.t_ready for f in out])  # before the flush: it hands out the rest at once
    out += rx.flush(t)
    runs, cur = [], 0
    for f in [*out, None]:
        if f is not None and not f.labels_new:
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    return dict(jitter=jitter, frames=len(out), gaps=gaps, runs=runs, counts=dict(rx.counts),
                latency=np.median([f.t_ready - f.index / fps for f in out]))


def run(args) -> int:
    if args.frames < 20 or args.size % 32:
        raise SystemExit("bench receiver: --frames must be >= 20 and --size a multiple of 32")
    import logging

    logging.getLogger("semcomm_ros").setLevel(logging.ERROR)  # one line per loss: the counters say it
    clip = _clip(args.frames, args.size)
    print(f"[bench receiver] {args.frames} frames {args.size}x{args.size} at 10 fps; link {args.link_kbps} kbps, "
          f"{args.loss:.0%} loss, {args.reorder:.0%} reordering, {args.latency_ms:g} ms")
    for jitter in args.jitter:
        m = measure(clip, args, jitter)
        g, c, runs = m["gaps"], m["counts"], m["runs"]
        print(f"  jitter_frames={jitter}: {m['frames']}/{args.frames} frames handed out; time between frames "
              f"p50 {np.median(g) * 1e3:.0f} / p99 {np.percentile(g, 99) * 1e3:.0f} / max {g.max() * 1e3:.0f} ms, "
              f"{int((g > 1).sum())} gaps over 1 s; capture -> handed out p50 {m['latency'] * 1e3:.0f} ms")
        print(f"    label map held (concealed) on {sum(runs)} frames in {len(runs)} runs, longest "
              f"{max(runs, default=0) / 10:.1f} s, runs by length {sorted(collections.Counter(runs).items())}")
        print(f"    lost {c['lost']}, reordered and used {c['reordered']}, stale {c['stale']}, bad {c['bad_packets']}, "
              f"waiting for an I-frame/keyframe {c['waiting_for_keyframe']}, keyframe requests {c['keyframe_requests']}")
    return 0
